package raylet

import "strings"

// What a worker's environment holds.
//
// A daemon's raylet builds its workers' environment from an allow-list of
// its own: the daemon was started from an operator's shell or a service
// manager, whose environment may hold credentials (cloud keys, the Redis
// password, the cluster token) that the jobs it runs have no business
// reading. The variables a program needs to run (its path, locale, home,
// temporary folder, the Go runtime's knobs) and rayo's own settings pass;
// the rest stays with the daemon. The embedded cluster's raylet runs in
// the driver, whose workers run the driver's own program for the same
// user: they inherit the driver's whole environment (Config.InheritEnv),
// as Ray's local workers do.

// workerEnvNames are the variables a daemon passes on to its workers.
var workerEnvNames = map[string]bool{
	"PATH": true, "HOME": true, "USER": true, "LOGNAME": true, "SHELL": true,
	"LANG": true, "LANGUAGE": true, "TZ": true, "TMPDIR": true, "TERM": true,
	"HOSTNAME": true, "LD_LIBRARY_PATH": true, "SSL_CERT_FILE": true, "SSL_CERT_DIR": true,
	"GOMAXPROCS": true, "GOGC": true, "GOMEMLIMIT": true, "GODEBUG": true,
	"GOTRACEBACK": true, "GOCOVERDIR": true,
}

// secretEnvNames are rayo's variables that hold secrets, or name their
// files: never passed on from the daemon's environment (a worker that
// needs the token is given it on its own, EnvToken).
var secretEnvNames = map[string]bool{
	"RAYO_TOKEN": true, "RAYO_TOKEN_FILE": true, "RAYO_REDIS_PASSWORD": true, "RAYO_TLS_CA_KEY": true,
}

// passesToWorkers reports whether the variable name of the daemon's
// environment passes to its workers: an allow-listed one, a locale
// setting (LC_*), or one of rayo's own settings (RAYO_*) that holds no
// secret.
func passesToWorkers(name string) bool {
	switch {
	case secretEnvNames[name]:
		return false
	case workerEnvNames[name], strings.HasPrefix(name, "LC_"), strings.HasPrefix(name, "RAYO_"):
		return true
	}
	return false
}

// workerBaseEnv returns the part of environ (KEY=VALUE entries) that a
// worker starts with: all of it when inherit is set, the entries
// passesToWorkers lets through otherwise.
func workerBaseEnv(environ []string, inherit bool) []string {
	if inherit {
		return environ
	}
	env := make([]string, 0, len(workerEnvNames))
	for _, kv := range environ {
		if name, _, ok := strings.Cut(kv, "="); ok && passesToWorkers(name) {
			env = append(env, kv)
		}
	}
	return env
}
