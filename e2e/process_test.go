package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a process gets to exit after SIGTERM before it is
// killed.
const stopGrace = 15 * time.Second

// process is a child process that a test started, with its standard output
// and standard error in one log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed once the process has exited
	waitErr error         // the result of Wait, set before done is closed
}

// startProcess starts bin with args and env, writing its output to logPath.
func startProcess(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create the %s log: %w", name, err)
	}

	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile

	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}

	p := &process{name: name, cmd: cmd, logFile: logFile, done: make(chan struct{})}

	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()

	return p, nil
}

// exited reports whether the process has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, which Vault and Vault Agent handle as a graceful
// shutdown, and kills the process if it is still running after stopGrace.
// It returns an error only when the process had to be killed.
func (p *process) stop() error {
	if p.exited() {
		return nil
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = p.cmd.Process.Kill()
	}

	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}

	// NOTE: only this PID is killed. Plugin processes that a killed Vault
	// started may stay behind until they notice that Vault is gone.
	_ = p.cmd.Process.Kill()
	<-p.done

	return fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM and was killed", p.name, p.cmd.Process.Pid, stopGrace)
}

// freePortPair returns a port on 127.0.0.1 that is free, and whose
// successor is free too, because a Vault dev server also listens for
// cluster traffic on its API port plus one. The ports are free when checked,
// so a caller that then fails to listen should try again.
func freePortPair() (int, error) {
	for range 20 {
		first, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}

		port := first.Addr().(*net.TCPAddr).Port

		second, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		first.Close()

		if err == nil {
			second.Close()
			return port, nil
		}
	}

	return 0, errors.New("find a free port: no pair of adjacent free ports on 127.0.0.1 in 20 tries")
}

// tailFile returns the last n lines of the file at path, with a note on
// how many lines were left out.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()

	var lines []string

	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64*1024), 4*1024*1024)

	for scanner.Scan() {
		lines = append(lines, scanner.Text())
	}

	skipped := 0
	if len(lines) > n {
		skipped = len(lines) - n
		lines = lines[skipped:]
	}

	text := strings.Join(lines, "\n")
	if skipped > 0 {
		text = fmt.Sprintf("(%d earlier lines left out)\n%s", skipped, text)
	}

	return text
}
