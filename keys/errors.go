package keys

import "errors"

// Sentinel errors returned by every Store. Callers test them with errors.Is;
// implementations wrap them with context.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change breaks a rule of the model (a duplicate name,
	// an illegal state transition, a third live secret, INVITED → ACTIVE by an admin).
	ErrConflict = errors.New("conflict")
	// ErrVersionMismatch: the caller's expected version is not the current one.
	ErrVersionMismatch = errors.New("version mismatch")
	// ErrInvalid: the input is malformed or incomplete; wrapped in a *ValidationError.
	ErrInvalid = errors.New("invalid input")
	// ErrUnavailable: the backing store cannot be reached (network, timeout, closed).
	ErrUnavailable = errors.New("store unavailable")
)

// FieldError names one invalid field and why.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every invalid field of an input. It matches ErrInvalid.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	if len(e.Fields) == 0 {
		return "invalid input"
	}
	msg := "invalid input: " + e.Fields[0].Field + ": " + e.Fields[0].Message
	if len(e.Fields) > 1 {
		msg += " (and more)"
	}
	return msg
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// Add records a field error.
func (e *ValidationError) Add(field, message string) {
	e.Fields = append(e.Fields, FieldError{Field: field, Message: message})
}

// Err returns e when it holds a field error, nil otherwise.
func (e *ValidationError) Err() error {
	if e == nil || len(e.Fields) == 0 {
		return nil
	}
	return e
}
