// Command rayo is rayo's command line.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayo-dev/rayo"
	"github.com/rayo-dev/rayo/bench"
	"github.com/rayo-dev/rayo/internal/hostres"
)

func main() {
	// Workers are this executable again, with the same arguments: they must
	// start serving before cobra looks at the flags.
	bench.ServeWorkerProfiling()
	rayo.ServeWorker()
	if len(os.Args) > 1 && os.Args[1] == bench.ChildCommand {
		// Handled here, not by cobra: the child's own workers get the same
		// arguments, and nothing may run before ServeWorker in them either.
		if err := bench.RunChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "rayo:", err)
			os.Exit(1)
		}
		return
	}
	if err := newRootCmd(os.Stdout, os.Stderr).Execute(); err != nil {
		os.Exit(1)
	}
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:          "rayo",
		Short:        "rayo: a Go-native distributed execution engine",
		SilenceUsage: true,
	}
	// --version by hand rather than cobra's Version field: cobra prints
	// that through text/template, whose reflection keeps every method of
	// every linked type in the binary (10 MB more of it for each worker
	// process to page in as it starts).
	var showVersion bool
	root.Flags().BoolVarP(&showVersion, "version", "v", false, "print rayo's version (as rayo version does)")
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		if showVersion {
			fmt.Fprintln(cmd.OutOrStdout(), versionLine())
			return nil
		}
		return cmd.Help()
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newVersionCmd(), newMicrobenchmarkCmd(), newStartCmd(), newStopCmd(), newStatusCmd(), newDrainCmd(), newGCSServerCmd())
	root.AddCommand(newStateCmds()...)
	root.AddCommand(newJobCmd())
	return root
}

func newMicrobenchmarkCmd() *cobra.Command {
	var (
		asJSON     bool
		filter     string
		list       bool
		cfg        bench.Config
		putMiB     int
		getMiB     int
		spillMiB   int
		profileDir string
	)
	cmd := &cobra.Command{
		Use:   "microbenchmark",
		Short: "Run Ray's microbenchmarks, and this machine's floor, against DESIGN's targets",
		Long: `Runs Ray's microbenchmark suite under Ray's metric names on an embedded
cluster, and in the same run measures this machine's floor: round trips
between two processes over a Unix socket, and memcpy bandwidth. Each figure
is printed with its ratio to the floor and the target of DESIGN.md section 8.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if list {
				fmt.Fprintln(cmd.OutOrStdout(), strings.Join(bench.Names(), "\n"))
				return nil
			}
			if filter != "" {
				re, err := regexp.Compile(filter)
				if err != nil {
					return fmt.Errorf("--filter: %w", err)
				}
				cfg.Filter = re
			}
			cfg.PutBytes = putMiB << 20
			cfg.GetBytes = getMiB << 20
			cfg.SpillBytes = spillMiB << 20
			cfg.ProfileDir = profileDir
			if !asJSON {
				cfg.Progress = cmd.ErrOrStderr()
			}
			// Stopped by a signal, the suite still shuts its cluster down
			// (and its daemons' processes).
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			results, err := bench.Run(ctx, cfg)
			var werr error
			if asJSON {
				werr = bench.WriteJSON(cmd.OutOrStdout(), results)
			} else {
				fmt.Fprintln(cmd.OutOrStdout())
				werr = bench.WriteTable(cmd.OutOrStdout(), results)
			}
			if err != nil {
				return err
			}
			return werr
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, `print a JSON array of {"name","value","unit","ratio"} instead of the table`)
	f.StringVar(&filter, "filter", "", "run only the metrics matching this regular expression (and the floors they are compared with)")
	f.BoolVar(&list, "list", false, "list the metrics and exit")
	f.DurationVar(&cfg.Duration, "duration", 2*time.Second, "how long to measure each metric")
	f.IntVar(&cfg.NumCPUs, "num-cpus", numCPU(), "CPUs of the embedded cluster")
	f.StringVar(&cfg.Address, "address", "", "run against the cluster at HOST:PORT (started with rayo start) instead of an embedded one")
	f.IntVar(&cfg.Actors, "actors", 0, "actors of 1_n_actor_calls_async and the n_n actor metrics (default: --num-cpus)")
	f.IntVar(&cfg.MemoryActors, "memory-actors", 100, "live actors of memory_per_actor")
	f.IntVar(&putMiB, "put-mib", 256, "MiB per put of single_client_put_gigabytes (and per copy of memcpy_gigabytes)")
	f.IntVar(&getMiB, "get-mib", 1024, "MiB of the []float64 of single_client_get_1GiB_float64")
	f.IntVar(&spillMiB, "spill-mib", 2048, "MiB put through a store of a quarter that size for spill_gigabytes and restore_gigabytes")
	f.StringVar(&profileDir, "cpuprofile", "", "write a CPU profile of each metric to this folder (<metric>.pprof for the driver, <metric>.worker-<pid>.pprof per worker)")
	return cmd
}

// numCPU is this machine's CPU count for rayo: its affinity mask and its
// cgroup's CPU quota honoured.
func numCPU() int { return hostres.CPUs() }
