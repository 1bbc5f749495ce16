package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/blazelock/webhooks/internal/testinfra"
)

// TestPprofOnItsOwnListener: DISPATCHER_PPROF_ADDR serves the profiles on
// that address only; the API listener never does.
func TestPprofOnItsOwnListener(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testinfra.FreePort(t))
	s := newStack(t, map[string]string{"DISPATCHER_PPROF_ADDR": addr})
	a := s.dispatcher()

	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "HeapInuse") {
		t.Fatalf("pprof heap: HTTP %d %.200s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + a.httpAddr + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("the API listener serves pprof")
	}
}
