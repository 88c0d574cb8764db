package conf

import (
	"errors"
	"log/slog"
	"time"
)

// Default sets *v to d when *v is the zero value of T, the value a field
// has when the caller left it out.
func Default[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Logger sets *l to a logger that discards everything when it is nil.
func Logger(l **slog.Logger) {
	if *l == nil {
		*l = slog.New(slog.DiscardHandler)
	}
}

// Now sets *now to time.Now when it is nil: tests pass a fake clock.
func Now(now *func() time.Time) {
	if *now == nil {
		*now = time.Now
	}
}

// Number is what Positive and Field take: the signed numbers config fields
// are made of, time.Duration among them.
type Number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~float32 | ~float64
}

// Positive sets *v to d unless *v is above zero: for fields where zero
// and negative values both mean "the default".
func Positive[T Number](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Value is one numeric field for NotNegative: its path in error messages
// and whether it is below zero. Build it with Field.
type Value struct {
	path     string
	negative bool
}

// Field names v by its path (vip.tick) for NotNegative.
func Field[T Number](path string, v T) Value {
	return Value{path: path, negative: v < 0}
}

// NotNegative returns "<path>: must not be negative" for the first of
// fields that is below zero, and nil when none is.
func NotNegative(fields ...Value) error {
	for _, f := range fields {
		if f.negative {
			return errors.New(f.path + ": must not be negative")
		}
	}
	return nil
}
