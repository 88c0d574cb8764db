package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

var (
	durationType    = reflect.TypeFor[Duration]()
	timeType        = reflect.TypeFor[time.Time]()
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	maxShapeDepth   = 64
	errTrailingData = errors.New("unexpected data after the JSON value")
)

// decodeGeneric reads exactly one JSON value with numbers kept as
// json.Number, so integers are checked without float rounding.
func decodeGeneric(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errTrailingData
	}
	return v, nil
}

// decodeStrict decodes b into a new T. The generic value v (b decoded with
// decodeGeneric) is first checked against T's shape, so an unknown field or
// a wrong type is reported with its path below prefix instead of the
// encoding/json message that has no path. Key matching is exact: the
// case-insensitive fallback of encoding/json is not accepted.
func decodeStrict[T any](prefix string, b []byte, v any) (*T, error) {
	out := new(T)
	if err := checkShape(prefix, v, reflect.TypeFor[T](), 0); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return nil, invalidf(prefix, "%v", err)
	}
	return out, nil
}

// checkShape reports the first place where the generic JSON value v does not
// fit type t. Map keys are visited in sorted order so the error is
// deterministic.
func checkShape(path string, v any, t reflect.Type, depth int) error {
	if depth > maxShapeDepth {
		return invalidf(path, "nested too deeply")
	}
	if v == nil {
		// null leaves the Go value at its zero value, as encoding/json does.
		return nil
	}
	switch t {
	case durationType:
		switch x := v.(type) {
		case string:
			if _, err := time.ParseDuration(x); err != nil {
				return invalidf(path, "invalid duration %q (want e.g. \"2s\", \"150ms\")", x)
			}
			return nil
		case json.Number:
			if _, err := strconv.ParseInt(string(x), 10, 64); err != nil {
				return invalidf(path, "invalid duration %s (want e.g. \"2s\", \"150ms\")", x)
			}
			return nil
		default:
			return invalidf(path, "want a duration string such as \"2s\", got %s", jsonTypeName(v))
		}
	case timeType:
		s, ok := v.(string)
		if !ok {
			return invalidf(path, "want an RFC 3339 time string, got %s", jsonTypeName(v))
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			return invalidf(path, "invalid time %q (want RFC 3339)", s)
		}
		return nil
	case rawMessageType:
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return checkShape(path, v, t.Elem(), depth+1)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return invalidf(path, "want an object, got %s", jsonTypeName(v))
		}
		fields := jsonFields(t)
		for _, k := range sortedKeys(m) {
			f, ok := fields[k]
			if !ok {
				return invalidf(joinPath(path, k), "unknown field")
			}
			if err := checkShape(joinPath(path, k), m[k], f.Type, depth+1); err != nil {
				return err
			}
		}
		return nil
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return invalidf(path, "want an object, got %s", jsonTypeName(v))
		}
		for _, k := range sortedKeys(m) {
			if err := checkShape(joinPath(path, k), m[k], t.Elem(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			return invalidf(path, "want a list, got %s", jsonTypeName(v))
		}
		for i, e := range a {
			if err := checkShape(fmt.Sprintf("%s[%d]", path, i), e, t.Elem(), depth+1); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		if _, ok := v.(string); !ok {
			if n, isNum := v.(json.Number); isNum {
				return invalidf(path, "want a string, got number %s (quote it: \"%s\")", n, n)
			}
			return invalidf(path, "want a string, got %s", jsonTypeName(v))
		}
		return nil
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return invalidf(path, "want true or false, got %s", jsonTypeName(v))
		}
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			return invalidf(path, "want an integer, got %s", jsonTypeName(v))
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || reflect.Zero(t).OverflowInt(i) {
			return invalidf(path, "want an integer, got %s", n)
		}
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			return invalidf(path, "want a non-negative integer, got %s", jsonTypeName(v))
		}
		u, err := strconv.ParseUint(string(n), 10, 64)
		if err != nil || reflect.Zero(t).OverflowUint(u) {
			return invalidf(path, "want a non-negative integer, got %s", n)
		}
		return nil
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			return invalidf(path, "want a number, got %s", jsonTypeName(v))
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(f, 0) {
			return invalidf(path, "want a number, got %s", n)
		}
		return nil
	case reflect.Interface:
		return nil
	}
	return invalidf(path, "unsupported field type %s", t)
}

// jsonFields maps the JSON names of t's exported fields to the fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			n, _, _ := strings.Cut(tag, ",")
			if n == "-" {
				continue
			}
			if n != "" {
				name = n
			}
		}
		out[name] = f
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func jsonTypeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "number " + string(x)
	case string:
		return "a string"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
