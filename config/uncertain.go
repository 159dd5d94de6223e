package config

import "fmt"

// UncertainPolicy is [delivery] uncertain: what to do with a message whose
// delivery attempt was cut off after the final dot, before the relay's
// reply, so that the relay may or may not have it.
type UncertainPolicy string

const (
	// UncertainRetry (the default) retries it like a deferred message; the
	// recipient may receive it twice.
	UncertainRetry UncertainPolicy = "retry"
	// UncertainHold puts it on hold for the operator, who checks the
	// relay's log and then releases (`relayq queue release`) or deletes it.
	UncertainHold UncertainPolicy = "hold"
)

// UnmarshalText accepts "retry" or "hold".
func (p *UncertainPolicy) UnmarshalText(text []byte) error {
	switch v := UncertainPolicy(text); v {
	case UncertainRetry, UncertainHold:
		*p = v
		return nil
	}
	return fmt.Errorf("%q is not one of retry, hold", text)
}
