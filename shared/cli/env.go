package cli

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// LoadEnv fills spec, a pointer to a struct with envconfig tags, from the
// environment: the one loader of both daemons. A value that does not parse
// is one line naming the variable and what it must be, e.g.
// `SWL_PORT: "abc" is not a number`, rather than envconfig's account of its
// internals. A type with a Decode method words its own error, completing
// `VAR: "value" …` (e.g. "is not a duration such as \"20s\"").
func LoadEnv(spec any) error {
	err := envconfig.Process("", spec)
	var pe *envconfig.ParseError
	if !errors.As(err, &pe) {
		if err != nil {
			return fmt.Errorf("environment: %w", err)
		}
		return nil
	}
	f, ok := reflect.Indirect(reflect.ValueOf(spec)).Type().FieldByName(pe.FieldName)
	if !ok {
		return fmt.Errorf("%s: %q: %w", pe.KeyName, pe.Value, pe.Err)
	}
	if _, decodes := reflect.New(f.Type).Interface().(envconfig.Decoder); decodes {
		if why := pe.Err.Error(); strings.HasPrefix(why, "is not ") {
			return fmt.Errorf("%s: %q %s", pe.KeyName, pe.Value, why)
		}
		return fmt.Errorf("%s: %q: %w", pe.KeyName, pe.Value, pe.Err)
	}
	return fmt.Errorf("%s: %q %s", pe.KeyName, pe.Value, notA(f.Type, pe.Value, pe.Err))
}

// notA words why value is not of type t, the parse having failed with err.
func notA(t reflect.Type, value string, err error) string {
	switch {
	case t.Kind() == reflect.Slice:
		return "is not a comma-separated list of " + Want(t.Elem(), true)
	case t.Kind() == reflect.Map:
		return "is not a comma-separated list of key:value pairs"
	case errors.Is(err, strconv.ErrRange):
		return "is out of range for " + Want(t, false)
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if t == durationType {
			break
		}
		if _, ferr := strconv.ParseFloat(strings.TrimSpace(value), 64); ferr != nil {
			return "is not a number"
		}
	}
	return "is not " + Want(t, false)
}

var durationType = reflect.TypeFor[time.Duration]()

// Want says what a value of type t is, for errors about settings from the
// environment or a settings file ("must be …", "is not …"): "a number",
// "true or false"; plural for the elements of a list.
func Want(t reflect.Type, plural bool) string {
	one, many := t.String(), t.String()+" values"
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		one, many = "a whole number", "whole numbers"
		if t == durationType {
			one, many = `a duration such as "20s"`, `durations such as "20s"`
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		one, many = "a whole number of 0 or more", "whole numbers of 0 or more"
	case reflect.Float32, reflect.Float64:
		one, many = "a number", "numbers"
	case reflect.Bool:
		one, many = "true or false", "true or false values"
	case reflect.String:
		one, many = "a string", "strings"
	}
	if plural {
		return many
	}
	return one
}
