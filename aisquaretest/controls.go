package aisquaretest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// serveControl routes the /_emulator/ paths, which are not part of the real
// API. Errors use the {"detail", "code"} shape. No response contains an API
// key or a token.
func (e *Emulator) serveControl(w http.ResponseWriter, r *http.Request, entry *requestLog) {
	route := strings.TrimPrefix(r.URL.Path, controlPrefix)
	segments := strings.Split(route, "/")

	switch {
	case route == "health":
		if checkMethod(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}
	case route == "users":
		e.serveUsers(w, r, entry)
	case len(segments) == 2 && segments[0] == "users":
		if checkMethod(w, r, http.MethodDelete) {
			e.serveRemoveUser(w, segments[1], entry)
		}
	case len(segments) == 3 && segments[0] == "users" && segments[2] == "revoke-sessions":
		if checkMethod(w, r, http.MethodPost) {
			e.serveRevokeSessions(w, segments[1], entry)
		}
	case route == "counters":
		if checkMethod(w, r, http.MethodGet) {
			writeJSON(w, http.StatusOK, countersResponse{Total: e.Counters(), Users: e.countersByUser()})
		}
	case route == "counters/reset":
		if checkMethod(w, r, http.MethodPost) {
			e.ResetCounters()
			writeJSON(w, http.StatusNoContent, nil)
		}
	case route == "faults":
		e.serveFaults(w, r, entry)
	case route == "settings":
		e.serveSettings(w, r, entry)
	default:
		writeJSON(w, http.StatusNotFound, detailResponse{Detail: "Not found.", Code: "not_found"})
	}
}

type countersResponse struct {
	Total Counters            `json:"total"`
	Users map[string]Counters `json:"users"`
}

// writeControlError sends a control error and notes it in the request log.
func writeControlError(w http.ResponseWriter, status int, code, message string, entry *requestLog) {
	entry.note = message
	writeJSON(w, status, detailResponse{Detail: message, Code: code})
}

// decodeControlBody decodes the request body, a single JSON object, into v.
// Unknown fields are an error, so that a misspelled field is not ignored.
// It sends 400 and returns false when the body is invalid.
func decodeControlBody(w http.ResponseWriter, r *http.Request, v any, entry *requestLog) bool {
	body, err := readBody(w, r)
	if err != nil {
		writeControlError(w, http.StatusBadRequest, "invalid_request", err.Error(), entry)
		return false
	}

	decoder := json.NewDecoder(bytes.NewReader(body))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(v); err != nil {
		writeControlError(w, http.StatusBadRequest, "invalid_request", "invalid JSON body: "+err.Error(), entry)
		return false
	}
	if decoder.More() {
		writeControlError(w, http.StatusBadRequest, "invalid_request", "invalid JSON body: data after the JSON object", entry)
		return false
	}
	return true
}

func (e *Emulator) serveUsers(w http.ResponseWriter, r *http.Request, entry *requestLog) {
	if !checkMethod(w, r, http.MethodGet, http.MethodPost) {
		return
	}

	if r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, map[string][]userSummary{"users": e.listUsers()})
		return
	}

	var request struct {
		Name   string `json:"name"`
		APIKey string `json:"api_key"`
	}
	if !decodeControlBody(w, r, &request, entry) {
		return
	}

	id, err := e.addUser(request.Name, request.APIKey)
	if errors.Is(err, errAPIKeyInUse) {
		writeControlError(w, http.StatusConflict, "conflict", err.Error(), entry)
		return
	}
	if err != nil {
		writeControlError(w, http.StatusBadRequest, "invalid_request", err.Error(), entry)
		return
	}

	entry.userName = request.Name
	writeJSON(w, http.StatusCreated, userSummary{Name: request.Name, UserID: id})
}

func (e *Emulator) serveRemoveUser(w http.ResponseWriter, name string, entry *requestLog) {
	if !e.removeUser(name) {
		writeControlError(w, http.StatusNotFound, "not_found", fmt.Sprintf("user %q not found", name), entry)
		return
	}
	entry.userName = name
	writeJSON(w, http.StatusNoContent, nil)
}

func (e *Emulator) serveRevokeSessions(w http.ResponseWriter, name string, entry *requestLog) {
	if !e.revokeSessions(name) {
		writeControlError(w, http.StatusNotFound, "not_found", fmt.Sprintf("user %q not found", name), entry)
		return
	}
	entry.userName = name
	writeJSON(w, http.StatusNoContent, nil)
}

func (e *Emulator) serveFaults(w http.ResponseWriter, r *http.Request, entry *requestLog) {
	if !checkMethod(w, r, http.MethodGet, http.MethodPost, http.MethodDelete) {
		return
	}

	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, map[string][]Fault{"faults": e.pendingFaults()})
	case http.MethodDelete:
		e.ClearFaults()
		writeJSON(w, http.StatusNoContent, nil)
	case http.MethodPost:
		var fault Fault
		if !decodeControlBody(w, r, &fault, entry) {
			return
		}
		if err := e.injectFault(fault); err != nil {
			writeControlError(w, http.StatusBadRequest, "invalid_request", "invalid fault: "+err.Error(), entry)
			return
		}
		writeJSON(w, http.StatusCreated, fault)
	}
}

// settingsUpdate is the body of PUT /_emulator/settings. Omitted fields keep
// their values.
type settingsUpdate struct {
	AccessTTLSeconds  *int64 `json:"access_ttl_seconds"`
	RefreshTTLSeconds *int64 `json:"refresh_ttl_seconds"`
	RotateRefresh     *bool  `json:"rotate_refresh"`
}

// maxTTLSeconds keeps a lifetime within time.Duration, about 292 years.
const maxTTLSeconds = int64(1<<63-1) / int64(time.Second)

func (e *Emulator) serveSettings(w http.ResponseWriter, r *http.Request, entry *requestLog) {
	if !checkMethod(w, r, http.MethodGet, http.MethodPut) {
		return
	}
	if r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, e.currentSettings())
		return
	}

	var update settingsUpdate
	if !decodeControlBody(w, r, &update, entry) {
		return
	}
	for field, seconds := range map[string]*int64{
		"access_ttl_seconds":  update.AccessTTLSeconds,
		"refresh_ttl_seconds": update.RefreshTTLSeconds,
	} {
		if seconds != nil && (*seconds <= 0 || *seconds > maxTTLSeconds) {
			message := fmt.Sprintf("%s must be a number of seconds from 1 to %d, not %d", field, maxTTLSeconds, *seconds)
			writeControlError(w, http.StatusBadRequest, "invalid_request", message, entry)
			return
		}
	}

	writeJSON(w, http.StatusOK, e.updateSettings(update))
}

// updateSettings applies the fields of a validated update in one critical
// section and returns the resulting settings.
func (e *Emulator) updateSettings(update settingsUpdate) settings {
	e.mu.Lock()
	if update.AccessTTLSeconds != nil {
		e.accessTTL = time.Duration(*update.AccessTTLSeconds) * time.Second
	}
	if update.RefreshTTLSeconds != nil {
		e.refreshTTL = time.Duration(*update.RefreshTTLSeconds) * time.Second
	}
	if update.RotateRefresh != nil {
		e.rotateRefresh = *update.RotateRefresh
	}
	e.mu.Unlock()

	return e.currentSettings()
}
