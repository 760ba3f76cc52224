package testidp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oidc-session/oidc_session/internal/testenv"
)

// locateBinary returns $envVar when set, else <repo root>/.bin/<name>. When
// the file is not an executable the test fails if CI=true and is skipped
// otherwise; what names the program in those messages.
func locateBinary(t testing.TB, envVar, name, what string) string {
	t.Helper()
	path := os.Getenv(envVar)
	if path == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			testenv.Missing(t, fmt.Sprintf("%s: cannot locate repository root: %v", what, err), testenv.InstallDeps)
			return ""
		}
		path = filepath.Join(root, ".bin", name)
	}
	st, err := os.Stat(path)
	if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		testenv.Missing(t, fmt.Sprintf("%s binary %s not usable (err=%v)", what, path, err), testenv.InstallDeps)
		return ""
	}
	return path
}

// startWithRetries calls try with attempt 1, 2, 3 until it succeeds: the
// free port try picks may be taken by a racing process before the
// provider binds it. It fails the test when all attempts failed.
func startWithRetries[T any](t testing.TB, what string, try func(attempt int) (T, error)) T {
	t.Helper()
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		v, err := try(attempt)
		if err == nil {
			return v
		}
		lastErr = err
		t.Logf("testidp: %s start attempt %d failed: %v", what, attempt, err)
	}
	t.Fatalf("testidp: could not start %s: %v", what, lastErr)
	var zero T
	return zero
}

// process is a provider's child process, its output in a log file.
type process struct {
	what    string        // the program, in messages ("dex")
	logPath string        // stdout+stderr
	grace   time.Duration // stop: SIGTERM and wait this long before SIGKILL; 0 kills at once

	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	stopOnce sync.Once
}

// launch starts cmd with its output in p.logPath, stops it in t.Cleanup
// (logging the log's tail when the test failed) and waits until readyURL
// answers 200 (bounded by startTimeout). On error the process is stopped.
func (p *process) launch(t testing.TB, cmd *exec.Cmd, readyURL string) error {
	logFile, err := os.Create(p.logPath)
	if err != nil {
		return err
	}
	p.cmd = cmd
	p.done = make(chan struct{})
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	go func() {
		cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("testidp: tail of %s log %s:\n%s", p.what, p.logPath, testenv.Tail(p.logPath, 40))
		}
	})
	if err := p.waitReady(readyURL, startTimeout); err != nil {
		p.stop()
		return fmt.Errorf("%w; %s log tail:\n%s", err, p.what, testenv.Tail(p.logPath, 20))
	}
	return nil
}

// waitReady polls url until it answers 200.
func (p *process) waitReady(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return errors.New(p.what + " exited during startup")
		case <-ctx.Done():
			return fmt.Errorf("%s discovery %s not answering after %s (last error: %v)", p.what, url, timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends the process (SIGTERM first when p.grace > 0, then SIGKILL) and
// waits for it to exit. Idempotent.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		if p.cmd == nil || p.cmd.Process == nil {
			return
		}
		if p.grace > 0 {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				return
			case <-time.After(p.grace):
			}
		}
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
	})
}
