//go:build linux

package testredis

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the child in its own process group (so forked children,
// e.g. a diskless-replication RDB writer, are killed with it) and asks the
// kernel to kill it if the test binary dies without running its cleanups.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killProcess sends SIGKILL to the child's whole process group.
func killProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		_ = cmd.Process.Kill()
	}
}
