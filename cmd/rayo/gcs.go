package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayo-dev/rayo/internal/gcs"
	"github.com/rayo-dev/rayo/internal/node"
	"github.com/rayo-dev/rayo/internal/pki"
)

// newGCSServerCmd is the control store as a process of its own, as Ray's
// gcs_server: the head's daemon runs it (see node.Config.GCSCommand) and
// starts it again when it exits. It is hidden: users start a head.
func newGCSServerCmd() *cobra.Command {
	var (
		host, token, redisAddr, redisPassword string
		port, maxTasks                        int
	)
	cmd := &cobra.Command{
		Use:    "gcs-server",
		Short:  "Serve a cluster's control store until SIGTERM (run by the head's daemon)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := applyEnv(cmd.Flags(), os.LookupEnv); err != nil {
				return err
			}
			var err error
			if host, err = resolveHost(host, systemInterfaces); err != nil {
				return err
			}
			if token == "" {
				token = os.Getenv("RAYO_TOKEN")
			}
			if redisPassword == "" {
				redisPassword = os.Getenv("RAYO_REDIS_PASSWORD")
			}
			ip := net.ParseIP(host)
			if token == "" && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return fmt.Errorf("gcs-server: %w (host %s)", node.ErrTokenNeeded, host)
			}
			// Stopping early (while the tables load) is stopping too.
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sig)
			out := cmd.OutOrStdout()
			logf := func(format string, args ...any) {
				fmt.Fprintf(out, "%s gcs-server[%d]: %s\n", time.Now().Format("2006-01-02 15:04:05.000"), os.Getpid(), fmt.Sprintf(format, args...))
			}
			// The head's credentials and CA, which signs joining nodes'.
			if err := node.LoadTLS(os.Getenv(pki.EnvDir), os.Getenv(pki.EnvCADir)); err != nil {
				return fmt.Errorf("gcs-server: %w", err)
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
			if err != nil {
				return fmt.Errorf("gcs-server: %w", err)
			}
			began := time.Now()
			srv, err := gcs.Serve(ln, gcs.Config{Token: token, RedisAddress: redisAddr, RedisPassword: redisPassword, MaxTaskRecords: maxTasks})
			if err != nil {
				return fmt.Errorf("gcs-server: %w", err)
			}
			store := "in memory"
			if redisAddr != "" {
				store = "in Redis at " + redisAddr
			}
			logf("serving at %s, tables %s; loaded %d node(s) and %d job(s) in %v",
				srv.Addr(), store, len(srv.Nodes()), len(srv.Jobs()), time.Since(began).Round(time.Millisecond))
			s := <-sig
			logf("stopping on %v", s)
			if err := srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("gcs-server: close: %w", err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&host, "host", "127.0.0.1", "address to listen on")
	f.IntVar(&port, "port", node.DefaultPort, "port to listen on")
	f.IntVar(&maxTasks, "max-task-records", 0, "task attempts kept for the state API (default 10000): past it the oldest finished are dropped")
	f.StringVar(&token, "token", "", "the cluster's secret (default: RAYO_TOKEN, which keeps it out of ps)")
	f.StringVar(&redisAddr, "redis-address", "", "keep the tables in the Redis server at HOST:PORT, so that a restart finds them")
	f.StringVar(&redisPassword, "redis-password", "", "the Redis server's password (default: RAYO_REDIS_PASSWORD)")
	return cmd
}
