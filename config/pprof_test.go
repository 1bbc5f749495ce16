package config_test

import (
	"strings"
	"testing"

	"github.com/blazelock/webhooks/config"
)

func TestPprofAddr(t *testing.T) {
	for _, tc := range []struct {
		value, want string
		ok          bool
	}{
		{"", "", true},
		{" 127.0.0.1:6060 ", "127.0.0.1:6060", true},
		{"6060", "6060", false},
	} {
		c := config.Load(env(map[string]string{"DISPATCHER_PPROF_ADDR": tc.value}))
		err := c.Validate()
		if c.PprofAddr != tc.want || (err == nil) != tc.ok {
			t.Errorf("%q: PprofAddr %q, Validate %v", tc.value, c.PprofAddr, err)
		}
		if err != nil && !strings.Contains(err.Error(), "DISPATCHER_PPROF_ADDR") {
			t.Errorf("%q: error does not name the variable: %v", tc.value, err)
		}
	}
}
