package testinfra

import "github.com/blazelock/webhooks/internal/harness"

// LogBuffer is a log sink that servers' goroutines, child processes and
// the test share.
type LogBuffer = harness.LogBuffer
