package rayo

import (
	"context"
	"slices"
	"strings"
	"testing"
)

type optionTarget struct{}

var (
	optionTask  = Func0(func() int { return 1 })
	optionActor = Actor0(func() *optionTarget { return &optionTarget{} })
	// misappliedAtDeclaration is refused at every call, as declared.
	misappliedAtDeclaration = Func0(func() int { return 1 }, ObjectStoreMemory(1<<20))
)

// optionCalls makes each call that takes options, given opts, and
// returns its error.
var optionCalls = map[string]func(opts ...Option) error{
	"Init": func(opts ...Option) error { return Init(opts...) },
	"a task": func(opts ...Option) error {
		return optionTask.Options(opts...).Remote().Err()
	},
	"an actor": func(opts ...Option) error {
		return optionActor.Options(opts...).Remote().Err()
	},
	"GetActor": func(opts ...Option) error {
		_, err := GetActor[*optionTarget](context.Background(), "no-such-actor", opts...)
		return err
	},
	"a placement group": func(opts ...Option) error {
		_, err := NewPlacementGroup(context.Background(), []Bundle{{"CPU": 1}}, StrategyPack, opts...)
		return err
	},
}

// TestOptionsRefusedWhereTheyDoNotApply gives every option to every call
// it does not apply to, and checks that the call fails, naming the option
// and the call, and starts nothing.
func TestOptionsRefusedWhereTheyDoNotApply(t *testing.T) {
	pg := &PlacementGroup{id: []byte("pg"), bundles: []Bundle{{"CPU": 1}}}
	cases := []struct {
		name    string
		opt     Option
		applies []string
	}{
		{"NumCPUs", NumCPUs(1), []string{"Init", "a task", "an actor"}},
		{"NumGPUs", NumGPUs(1), []string{"Init", "a task", "an actor"}},
		{"Resources", Resources(map[string]float64{"x": 1}), []string{"Init", "a task", "an actor"}},
		{"Memory", Memory(1 << 20), []string{"Init", "a task", "an actor"}},
		{"Name", Name("n"), []string{"a task", "an actor", "a placement group"}},
		{"MaxRetries", MaxRetries(1), []string{"a task"}},
		{"RetryExceptions", RetryExceptions(true), []string{"a task"}},
		{"LogToDriver", LogToDriver(false), []string{"Init"}},
		{"ObjectStoreMemory", ObjectStoreMemory(1 << 20), []string{"Init"}},
		{"ObjectSpillingDir", ObjectSpillingDir(t.TempDir()), []string{"Init"}},
		{"ObjectSpillingThreshold", ObjectSpillingThreshold(0.9), []string{"Init"}},
		{"DashboardPort", DashboardPort(0), []string{"Init"}},
		{"Address", Address("127.0.0.1:1"), []string{"Init"}},
		{"MemoryUsageThreshold", MemoryUsageThreshold(0.9), []string{"Init"}},
		{"Spread", Spread(), []string{"a task", "an actor"}},
		{"NodeAffinity", NodeAffinity("n", true), []string{"a task", "an actor"}},
		{"InPlacementGroup", InPlacementGroup(pg, 0), []string{"a task", "an actor"}},
		{"CaptureChildTasks", CaptureChildTasks(), []string{"a task", "an actor"}},
		{"MaxConcurrency", MaxConcurrency(2), []string{"an actor"}},
		{"MaxRestarts", MaxRestarts(1), []string{"an actor"}},
		{"MaxTaskRetries", MaxTaskRetries(1), []string{"an actor"}},
		{"Detached", Detached(), []string{"an actor", "a placement group"}},
		{"Namespace", Namespace("ns"), []string{"an actor", "GetActor"}},
	}
	for _, tc := range cases {
		for call, do := range optionCalls {
			if slices.Contains(tc.applies, call) {
				continue
			}
			t.Run(tc.name+"/"+call, func(t *testing.T) {
				err := do(tc.opt)
				want := "option " + tc.name + " does not apply to " + call + " (only to " + strings.Join(tc.applies, ", ") + ")"
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("%s given %s: err = %v, want one saying %q", call, tc.name, err, want)
				}
			})
		}
	}
}

// TestOptionsApplyWhereTheyShould checks that an option given where it
// applies is not refused, with a cluster running: a task with MaxRetries
// runs, an actor with MaxRestarts is created and GetActor with Namespace
// looks up.
func TestOptionsApplyWhereTheyShould(t *testing.T) {
	ctx := ctxT(t)
	if v, err := Get(ctx, optionTask.Options(MaxRetries(1), NumCPUs(1)).Remote()); err != nil || v != 1 {
		t.Fatalf("task with MaxRetries: %v, %v", v, err)
	}
	a := optionActor.Options(MaxRestarts(1), Name("option-target"), Namespace("options")).Remote()
	if a.Err() != nil {
		t.Fatalf("actor with MaxRestarts: %v", a.Err())
	}
	defer func() { _ = Kill(ctx, a) }()
	if _, err := GetActor[*optionTarget](ctx, "option-target", Namespace("options")); err != nil {
		t.Fatalf("GetActor with Namespace: %v", err)
	}
}

// TestOptionMisappliedAtDeclaration checks that an option refused at a
// remote function's declaration fails every call of it.
func TestOptionMisappliedAtDeclaration(t *testing.T) {
	for range 2 {
		err := misappliedAtDeclaration.Remote().Err()
		if err == nil || !strings.Contains(err.Error(), "option ObjectStoreMemory does not apply to a task") {
			t.Fatalf("Remote of a function declared with ObjectStoreMemory: err = %v", err)
		}
		if _, err := Get(ctxT(t), misappliedAtDeclaration.Remote()); err == nil || !strings.Contains(err.Error(), "ObjectStoreMemory") {
			t.Fatalf("Get: err = %v, want the refusal", err)
		}
	}
}

// TestZeroOptionRefused checks that a zero Option is refused by each call.
func TestZeroOptionRefused(t *testing.T) {
	for call, do := range optionCalls {
		if err := do(Option{}); err == nil || !strings.Contains(err.Error(), "zero Option given to "+call) {
			t.Errorf("%s given a zero Option: err = %v", call, err)
		}
	}
}
