//go:build race

package reliability

// raceEnabled: the test binary runs under the race detector, so the
// dispatcher children are built with -race too and their reports fail the test.
const raceEnabled = true
