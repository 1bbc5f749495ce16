package natsinfra_test

import (
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"github.com/blazelock/webhooks/internal/testinfra"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testinfra.RemoveBuilds()
	os.Exit(code)
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func itoa(u uint64) string { return strconv.FormatUint(u, 10) }
