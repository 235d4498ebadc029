package demos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/rayo-dev/rayo"
)

// Actors and their methods. Like the remote functions, they are declared
// at package level so that every worker registers them before main runs.
var (
	newCounter = rayo.Actor0(NewCounter)
	incr       = rayo.Method0(newCounter, (*Counter).Incr)

	newGoalsScored = rayo.Actor0(NewGoalsScored)
	score          = rayo.Method0(newGoalsScored, (*GoalsScored).Score)
)

// --- actors ------------------------------------------------------------

// Counter is the state of the seed's counter actor.
type Counter struct{ n int }

// NewCounter is the Counter actor's constructor: a counter at zero.
func NewCounter() *Counter { return &Counter{} }

// Incr adds one to the counter and returns its new value.
func (c *Counter) Incr() int {
	c.n++
	return c.n
}

// Counters creates ten counter actors, each with its own state in a worker
// process of its own, and increments each once: every one prints 1. Then
// it increments the first one five more times: calls on one actor run in
// the order they were made, each seeing the state the last one left, so
// they return 2 to 6.
func Counters(ctx context.Context) error {
	counters := make([]rayo.Actor[*Counter], 10)
	for i := range counters {
		counters[i] = newCounter.Remote()
		if err := counters[i].Err(); err != nil {
			return fmt.Errorf("create counter %d: %w", i, err)
		}
	}
	refs := make([]rayo.Ref[int], len(counters))
	for i, c := range counters {
		refs[i] = incr.Remote(c)
	}
	vs, err := rayo.GetAll(ctx, refs)
	if err != nil {
		return fmt.Errorf("increment ten counters: %w", err)
	}
	fmt.Println(vs)

	refs = make([]rayo.Ref[int], 5)
	for i := range refs {
		refs[i] = incr.Remote(counters[0])
	}
	vs, err = rayo.GetAll(ctx, refs)
	if err != nil {
		return fmt.Errorf("increment the first counter: %w", err)
	}
	fmt.Println(vs)
	return nil
}

// --- goals scored ------------------------------------------------------

// GoalsScored is the state of the seed's GoalsScored actor.
type GoalsScored struct{ goals int }

// NewGoalsScored is the GoalsScored actor's constructor: no goals yet.
func NewGoalsScored() *GoalsScored { return &GoalsScored{goals: 0} }

// Score sets the goals to a random number from 1 to 5 and returns it.
func (g *GoalsScored) Score() int {
	g.goals = rand.IntN(5) + 1
	return g.goals
}

// ScoreboardName is the name the Goals demo registers its named actor
// under.
const ScoreboardName = "scoreboard"

// Goals follows the seed's actor workflow: it creates a GoalsScored actor
// and prints its handle, calls Score and prints the ref that call
// returns, then gets and prints the result.
//
// Then it does the same with a named actor: it creates one under
// ScoreboardName, looks it up by that name with rayo.GetActor and calls it
// through the handle it finds. Last it kills the actor with rayo.Kill and
// shows that a call made after that fails with rayo.ErrActorDied and that
// the name is free again.
func Goals(ctx context.Context) error {
	goals := newGoalsScored.Remote()
	if err := goals.Err(); err != nil {
		return fmt.Errorf("create GoalsScored: %w", err)
	}
	fmt.Println(goals)

	totalGoalsRef := score.Remote(goals)
	fmt.Println(totalGoalsRef)

	total, err := rayo.Get(ctx, totalGoalsRef)
	if err != nil {
		return fmt.Errorf("score: %w", err)
	}
	fmt.Printf("Total goals scored: %d\n", total)

	// A named actor lives on until it is killed (or rayo shuts down), even
	// when no handle reaches it, and anyone can find it by its name.
	created := newGoalsScored.Options(rayo.Name(ScoreboardName)).Remote()
	if err := created.Err(); err != nil {
		return fmt.Errorf("create %q: %w", ScoreboardName, err)
	}
	board, err := rayo.GetActor[*GoalsScored](ctx, ScoreboardName)
	if err != nil {
		return err
	}
	fmt.Printf("found %q: %v (same actor: %t)\n", ScoreboardName, board, board.ID() == created.ID())

	n, err := rayo.Get(ctx, score.Remote(board))
	if err != nil {
		return fmt.Errorf("score on %q: %w", ScoreboardName, err)
	}
	fmt.Printf("%s: Total goals scored: %d\n", ScoreboardName, n)

	if err := rayo.Kill(ctx, board); err != nil {
		return fmt.Errorf("kill %q: %w", ScoreboardName, err)
	}
	fmt.Printf("killed %q\n", ScoreboardName)

	_, err = rayo.Get(ctx, score.Remote(board))
	if !errors.Is(err, rayo.ErrActorDied) {
		return fmt.Errorf("score on %q after Kill: got error %v, want one matching rayo.ErrActorDied", ScoreboardName, err)
	}
	fmt.Println("score after Kill:", err)
	fmt.Println("actor is dead:", errors.Is(err, rayo.ErrActorDied))

	// Killing a named actor frees its name.
	if _, err := rayo.GetActor[*GoalsScored](ctx, ScoreboardName); err == nil {
		return fmt.Errorf("GetActor found %q after Kill", ScoreboardName)
	}
	fmt.Printf("%q is no longer found by name\n", ScoreboardName)
	return nil
}
