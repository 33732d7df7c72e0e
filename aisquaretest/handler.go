package aisquaretest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// MaxRequestBodyBytes is the largest request body the emulator reads. Larger
// bodies get 400 with code "invalid_request".
const MaxRequestBodyBytes = 64 << 10

// controlPrefix starts every path that is not part of the real API.
const controlPrefix = "/_emulator/"

// detailResponse is the error shape of DRF and SimpleJWT, used for
// authentication failures, 404, 405 and injected faults.
type detailResponse struct {
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// errorResponse is AISquare's second error shape, used for invalid requests.
type errorResponse struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

var errBodyTooLarge = fmt.Errorf("request body is larger than %d bytes", MaxRequestBodyBytes)

// requestLog collects what the log line of one request needs besides the
// method, path and status. It never contains keys, tokens or bodies.
type requestLog struct {
	userName string
	note     string
}

// statusRecorder remembers the status a handler sent, for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (e *Emulator) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	recorder := &statusRecorder{ResponseWriter: w}
	entry := &requestLog{}

	switch path := r.URL.Path; {
	case apiEndpoints[path].name != "":
		e.serveAPI(recorder, r, apiEndpoints[path], entry)
	case strings.HasPrefix(path, controlPrefix):
		e.serveControl(recorder, r, entry)
	default:
		writeJSON(recorder, http.StatusNotFound, detailResponse{Detail: "Not found.", Code: "not_found"})
	}

	if e.logger != nil {
		e.logRequest(r, recorder.status, entry, time.Since(start))
	}
}

// logRequest writes one line with the method, the escaped path (never the
// query), the status, the user name if known and any note.
func (e *Emulator) logRequest(r *http.Request, status int, entry *requestLog, elapsed time.Duration) {
	statusText := "-" // no response was sent
	if status != 0 {
		statusText = fmt.Sprint(status)
	}

	userName := entry.userName
	if userName == "" {
		userName = "-"
	}

	line := fmt.Sprintf("%s %s %s user=%s %s", r.Method, r.URL.EscapedPath(), statusText, userName, elapsed.Round(time.Microsecond))
	if entry.note != "" {
		line += " (" + entry.note + ")"
	}
	e.logger.Print(line)
}

// writeJSON sends body as JSON with the given status. A nil body sends no
// content, for 204.
func writeJSON(w http.ResponseWriter, status int, body any) {
	if body == nil {
		w.WriteHeader(status)
		return
	}

	encoded, err := json.Marshal(body)
	if err != nil {
		// Every body is a fixed struct or map of strings and numbers.
		panic(fmt.Sprintf("aisquaretest: encoding response: %v", err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(encoded, '\n'))
}

// checkMethod sends 405 in DRF's shape and returns false unless the
// request's method is one of allowed.
func checkMethod(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	for _, method := range allowed {
		if r.Method == method {
			return true
		}
	}

	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, detailResponse{
		Detail: fmt.Sprintf("Method %q not allowed.", r.Method),
		Code:   "method_not_allowed",
	})
	return false
}

// readBody reads the request body, up to MaxRequestBodyBytes, and returns
// errBodyTooLarge beyond that.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, errBodyTooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("reading request body: %w", err)
	}
	return body, nil
}
