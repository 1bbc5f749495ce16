//go:build race

package testinfra

// raceEnabled: this test binary runs under the race detector.
const raceEnabled = true
