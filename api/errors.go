package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"relayq/queue"
	"relayq/spool"
)

// apiError is the body of every error answer:
// {"error": {"code", "message", "field"}}. Messages carry no paths, no
// configuration and no internal error text; the cause goes to the log.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// RetryAfter, in seconds, for the temporary refusals.
	RetryAfter int `json:"-"`
	cause      error
}

func (e *apiError) Error() string { return e.Message }
func (e *apiError) Unwrap() error { return e.cause }

func badRequest(code, field, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Message: msg, Field: field}
}

func writeError(w http.ResponseWriter, status int, code, msg, field string) {
	writeAPIError(w, &apiError{Status: status, Code: code, Message: msg, Field: field})
}

func writeAPIError(w http.ResponseWriter, e *apiError) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, e.Status, map[string]*apiError{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// fromSubmit maps intake's refusal (an SMTP reply) to an HTTP answer;
// fields names the JSON field of each envelope recipient.
func fromSubmit(err error, fields []string) *apiError {
	if errors.Is(err, queue.ErrKeyConflict) {
		return &apiError{Status: http.StatusConflict, Code: "idempotency_key_reused",
			Message: "the Idempotency-Key was used for a different request", cause: err}
	}
	var se *spool.SubmitError
	if !errors.As(err, &se) {
		return &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "temporary local problem, try again later", RetryAfter: 30, cause: err}
	}
	r := se.Reply
	e := &apiError{Message: r.Message, cause: err}
	switch {
	case se.Field == "from":
		e.Status, e.Code, e.Field = http.StatusBadRequest, "bad_sender", "from"
	case se.Field == "recipients":
		e.Field = "to"
		if se.Index < len(fields) {
			e.Field = fields[se.Index]
		}
		e.Status, e.Code = http.StatusBadRequest, "bad_recipient"
		switch {
		case r.Code == 452:
			e.Status, e.Code = http.StatusUnprocessableEntity, "too_many_recipients"
		case r.Code == 550 || r.Code == 553:
			e.Status, e.Code = http.StatusUnprocessableEntity, "unknown_recipient"
		}
	case r.Code == 552:
		e.Status, e.Code = http.StatusRequestEntityTooLarge, "too_large"
	case r.Code == 452 && r.EnhancedCode[1] == 3: // 4.3.1: disk or memory
		e.Status, e.Code, e.RetryAfter = http.StatusInsufficientStorage, "insufficient_storage", 60
	case r.Code == 452: // 4.7.0: [limits]
		e.Status, e.Code, e.RetryAfter = http.StatusTooManyRequests, "rate_limited", 60
	case r.Code/100 == 4:
		e.Status, e.Code, e.RetryAfter = http.StatusServiceUnavailable, "unavailable", 30
	default:
		e.Status, e.Code = http.StatusBadRequest, "refused"
	}
	return e
}
