// Package testredis starts real Redis servers (standalone, Sentinel, Cluster)
// as subprocesses for Go tests.
//
// Every server listens on a free 127.0.0.1 port, keeps its working directory
// and log in t.TempDir(), runs without persistence (save "", appendonly no)
// and is killed by PID when the test ends. Every wait is bounded. When the
// test fails, the tail of each server's log is printed.
//
// The binaries come from the Debian packages redis-server, redis-sentinel and
// redis-tools (see scripts/install-deps.sh). When they are missing, tests are
// skipped, except with CI=true where a missing binary fails the test.
package testredis

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// readyTimeout bounds how long a freshly started process may take to
	// answer PING.
	readyTimeout = 10 * time.Second
	// startAttempts is how many ports are tried when a process fails to
	// start (typically because another process grabbed the port).
	startAttempts = 5
	// logTailLines is how much of a log is printed when a test fails.
	logTailLines = 40
)

// Binary returns the path of the Redis executable name ("redis-server",
// "redis-sentinel" or "redis-cli"), looked up on PATH and then in /usr/bin
// and /usr/sbin.
//
// When it is not found, the test is skipped; with the environment variable
// CI=true it fails instead, because in CI a missing component is an error.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/bin", "/usr/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not installed (CI=true, so this is a failure): run scripts/install-deps.sh", name)
	}
	t.Skipf("%s not installed: run scripts/install-deps.sh", name)
	return ""
}

// Options configures Start.
type Options struct {
	// Password, when set, is the server's requirepass (and masterauth, so
	// the server can also authenticate as a replica).
	Password string
	// Args are extra redis-server command-line arguments, e.g.
	// []string{"--maxmemory", "10mb"}. They come after the defaults and
	// override them.
	Args []string
}

// Server is one redis-server (or redis-sentinel) subprocess.
type Server struct {
	// Addr is "127.0.0.1:port". It does not change across Restart.
	Addr string

	t        testing.TB
	label    string
	bin      string
	password string
	dir      string
	logPath  string
	argv     []string // full argument list, reused by Restart
	pid      int      // pid of the current process (0 when stopped)

	mu      sync.Mutex
	proc    *process
	clients []*redis.Client
}

// Start starts a standalone redis-server on a free loopback port and waits
// (at most ~10 s) until it answers PING. The server is stopped when the test
// ends. It fails the test if the server cannot be started.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t, "redis-server")
	s, err := startServer(t, "redis", bin, opts.Password, func(port int, dir string) ([]string, error) {
		return serverArgs(port, dir, opts.Password, opts.Args), nil
	})
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	return s
}

// serverArgs is the redis-server command line shared by every kind of data
// node.
func serverArgs(port int, dir, password string, extra []string) []string {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", "",
		"--loglevel", "notice",
	}
	if password != "" {
		args = append(args, "--requirepass", password, "--masterauth", password)
	}
	return append(args, extra...)
}

// URL returns "redis://[:password@]127.0.0.1:port/0".
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr, Path: "/0"}
	if s.password != "" {
		u.User = url.UserPassword("", s.password)
	}
	return u.String()
}

// Client returns a new go-redis client for this server (with its password).
// It is closed when the test that started the server ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.password})
	s.mu.Lock()
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	return c
}

// Stop kills the server process (SIGKILL) and waits until it has exited.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.pid = 0
	s.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Restart stops the server if it is running, starts it again with the same
// command line on the same port and waits (bounded) until it answers PING.
// Without persistence the data is gone afterwards. A cluster node keeps its
// nodes.conf and so its identity and slots. A Sentinel data server comes back
// with its original role (the initial replica with --replicaof the initial
// master); see Sentinel.WaitReplicaSynced.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		if err = s.launch(attempt); err == nil {
			return
		}
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
	t.Fatalf("testredis: restarting %s on %s: %v", s.label, s.Addr, err)
}

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// PID is the process id of the running server, 0 when stopped.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// LogPath is the file that receives the server's stdout and stderr.
func (s *Server) LogPath() string { return s.logPath }

// Dir is the server's working directory (inside t.TempDir()).
func (s *Server) Dir() string { return s.dir }

// startServer starts bin with the arguments built by args for a free port,
// trying new ports when the process does not come up. The server is stopped,
// its clients closed and (on failure) its log printed at the end of the test.
func startServer(t testing.TB, label, bin, password string, args func(port int, dir string) ([]string, error)) (*Server, error) {
	t.Helper()
	dir := t.TempDir()
	s := &Server{
		t:        t,
		label:    label,
		bin:      bin,
		password: password,
		dir:      dir,
		logPath:  filepath.Join(dir, label+".log"),
	}
	t.Cleanup(func() {
		s.Stop()
		s.mu.Lock()
		clients := s.clients
		s.clients = nil
		s.mu.Unlock()
		for _, c := range clients {
			_ = c.Close()
		}
	})
	t.Cleanup(func() {
		// Runs before the stop above (cleanups are LIFO).
		if t.Failed() {
			t.Logf("testredis: %s %s log (%s), last lines:\n%s", s.label, s.Addr, s.logPath, tail(s.logPath, logTailLines))
		}
	})

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		argv, err := args(port, dir)
		if err != nil {
			return nil, err
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.argv = argv
		if lastErr = s.launch(attempt); lastErr == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("starting %s failed %d times, last: %w", label, startAttempts, lastErr)
}

// launch starts the process once with s.argv and waits until it answers
// PING. The reply must come from this very process (INFO process_id), so a
// foreign server that owns the port is never mistaken for ours.
func (s *Server) launch(attempt int) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "\n=== testredis: %s attempt %d on %s at %s ===\n", s.label, attempt, s.Addr, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.bin, s.argv...)
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	setProcAttr(cmd)
	err = cmd.Start()
	_ = logf.Close() // the child has its own copy
	if err != nil {
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	p := newProcess(cmd)
	s.mu.Lock()
	s.proc = p
	s.pid = cmd.Process.Pid
	s.mu.Unlock()

	if err := waitReady(p, s.Addr, s.password, cmd.Process.Pid); err != nil {
		s.Stop()
		return fmt.Errorf("%s on %s: %w\n%s", s.label, s.Addr, err, tail(s.logPath, 10))
	}
	return nil
}

func waitReady(p *process, addr, password string, pid int) error {
	c := redis.NewClient(&redis.Options{
		Addr:         addr,
		Password:     password,
		DialTimeout:  300 * time.Millisecond,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxRetries:   -1,
		PoolSize:     1,
	})
	defer c.Close()
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("process exited early (%v)", p.waitErr())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = c.Ping(ctx).Err()
		if last == nil {
			var info string
			info, last = c.Info(ctx, "server").Result()
			if last == nil {
				got := infoField(info, "process_id")
				if got == strconv.Itoa(pid) {
					cancel()
					return nil
				}
				last = fmt.Errorf("port answered by process_id %q, not by our pid %d", got, pid)
			}
		}
		cancel()
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", readyTimeout, last)
}

// process wraps a started command and its Wait.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func newProcess(cmd *exec.Cmd) *process {
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) waitErr() error {
	<-p.done
	return p.err
}

// kill sends SIGKILL and waits (bounded) for the process to be reaped.
func (p *process) kill() {
	if !p.exited() {
		killProcess(p.cmd)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

var (
	portsMu sync.Mutex
	// usedPorts holds every port this test binary handed out, so two
	// servers started concurrently never get the same one.
	usedPorts = map[int]bool{}
)

// freePort returns a loopback TCP port that is free right now and has not
// been handed out before by this process.
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !usedPorts[port] {
			usedPorts[port] = true
			return port, nil
		}
	}
	return 0, errors.New("finding a free port: no unused port after 50 tries")
}

// infoField returns the value of key in an INFO reply ("key:value" lines).
func infoField(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimRight(line, "\r")
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return v
		}
	}
	return ""
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond every interval until it returns true or timeout
// passes; the error then carries cond's last description of the state.
func waitFor(timeout, interval time.Duration, cond func(ctx context.Context) (bool, string)) error {
	deadline := time.Now().Add(timeout)
	var state string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ok, st := cond(ctx)
		cancel()
		if ok {
			return nil
		}
		state = st
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v: %s", timeout, state)
		}
		time.Sleep(interval)
	}
}

// quickClient is a short-lived client for polling: small timeouts, no
// retries.
func quickClient(addr, password string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:         addr,
		Password:     password,
		DialTimeout:  500 * time.Millisecond,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		MaxRetries:   -1,
		PoolSize:     1,
	})
}

// role returns the first element of ROLE ("master", "slave", "sentinel").
func role(ctx context.Context, c *redis.Client) (string, error) {
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", errors.New("empty ROLE reply")
	}
	r, _ := v[0].(string)
	return r, nil
}
