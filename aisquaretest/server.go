package aisquaretest

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is an Emulator served over HTTP on a loopback address. The
// Emulator's methods, such as AddUser and Counters, are callable on the
// Server.
type Server struct {
	// URL is the base URL of the server, of the form http://127.0.0.1:41234,
	// with no trailing slash.
	URL string

	*Emulator

	listener   net.Listener
	httpServer *http.Server
	// cancelRequests cancels the context of every request, so that Close
	// does not wait for injected latencies.
	cancelRequests context.CancelFunc
	serveDone      chan struct{}
	logger         *log.Logger

	mu      sync.Mutex
	started bool
	closed  bool
}

// NewServer starts and returns a Server listening on 127.0.0.1 at a port the
// system picks. The caller must call Close when done. It panics if it
// cannot listen, as httptest.NewServer does.
func NewServer(opts Options) *Server {
	s := NewUnstartedServer(opts)
	s.Start()
	return s
}

// NewUnstartedServer returns a Server listening on 127.0.0.1 at a port the
// system picks, which serves no requests until Start. Connections made
// before Start wait. It panics if it cannot listen.
func NewUnstartedServer(opts Options) *Server {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("aisquaretest: failed to listen on 127.0.0.1:0: %v", err))
	}
	return newServer(listener, opts)
}

// StartServer starts and returns a Server listening on addr, a host:port
// whose host is a loopback IP address or "localhost" (see
// ValidateListenAddress). "localhost" listens on 127.0.0.1, and port 0 lets
// the system pick a port.
func StartServer(addr string, opts Options) (*Server, error) {
	if err := ValidateListenAddress(addr); err != nil {
		return nil, err
	}

	host, port, _ := net.SplitHostPort(addr)
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}
	listener, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s: %w", addr, err)
	}

	s := newServer(listener, opts)
	s.Start()
	return s, nil
}

// ValidateListenAddress returns an error unless addr is a host:port that the
// emulator may listen on. The host must be a loopback IP address, such as
// 127.0.0.1 or ::1, or "localhost", so that the emulator is never reachable
// from other machines. The port must be a number from 0 to 65535.
func ValidateListenAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid listen address %q: %v; use host:port, such as 127.0.0.1:8585", addr, err)
	}

	if !strings.EqualFold(host, "localhost") {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("invalid listen address %q: host %q is not a loopback address; use 127.0.0.1, ::1 or localhost", addr, host)
		}
	}

	if number, err := strconv.Atoi(port); err != nil || number < 0 || number > 65535 {
		return fmt.Errorf("invalid listen address %q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

func newServer(listener net.Listener, opts Options) *Server {
	requestContext, cancelRequests := context.WithCancel(context.Background())
	emulator := New(opts)

	s := &Server{
		URL:            "http://" + listener.Addr().String(),
		Emulator:       emulator,
		listener:       listener,
		cancelRequests: cancelRequests,
		serveDone:      make(chan struct{}),
		logger:         opts.Logger,
	}
	s.httpServer = &http.Server{
		Handler:           emulator.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return requestContext },
		ErrorLog:          opts.Logger,
	}
	return s
}

// Start starts serving a Server from NewUnstartedServer. It panics if the
// server was already started or closed.
func (s *Server) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.started || s.closed {
		panic("aisquaretest: Server already started or closed")
	}
	s.started = true

	go func() {
		defer close(s.serveDone)
		err := s.httpServer.Serve(s.listener)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && s.logger != nil {
			s.logger.Printf("aisquaretest: serving %s failed: %v", s.URL, err)
		}
	}()
}

// Close stops the server: it closes the listener, cancels requests that
// wait for an injected latency, and waits up to 5 seconds for other
// requests to finish before closing their connections. Calling Close again
// does nothing.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.closed {
		return
	}
	s.closed = true
	s.cancelRequests()

	if !s.started {
		_ = s.listener.Close()
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.httpServer.Shutdown(ctx); err != nil {
		_ = s.httpServer.Close()
	}
	<-s.serveDone
}
