package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// envPrefix begins the environment variable twin of every daemon flag.
const envPrefix = "RAYO_"

// envRule is the rule of the twins, as the daemons' help states it.
const envRule = `Every flag has an environment variable twin: RAYO_ and the flag's name
upper-cased, dashes turned to underscores (--num-cpus: RAYO_NUM_CPUS,
--head: RAYO_HEAD=true). A flag given on the command line wins over its
twin; a twin set to the empty string counts as unset.`

// envName is the environment variable twin of the flag named name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyEnv sets every flag of fs that the command line did not give from
// its environment variable twin (see envRule), read with lookup, and
// returns the names of the flags it set. A twin whose value the flag
// refuses is an error that names the variable.
func applyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) (map[string]bool, error) {
	set := map[string]bool{}
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		name := envName(f.Name)
		v, ok := lookup(name)
		if !ok || v == "" {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s=%q (the twin of --%s): %w", name, v, f.Name, serr)
			return
		}
		set[f.Name] = true
	})
	return set, err
}
