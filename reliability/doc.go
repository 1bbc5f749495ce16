// Package reliability holds the black-box reliability and security suite of
// the dispatcher (DESIGN.md, "Reliability: what is tried, and what must
// hold"). It has no code of its own: its tests build the dispatcher program
// once, run it as child processes against a nats-server and a redis-server
// that the tests start, stop and restart themselves, inject faults (SIGKILL,
// SIGTERM, NATS and Redis outages, misbehaving receivers, bad input), and
// then check that every published event ended as the rules say, none lost,
// duplicates counted and bounded. docs/reliability.md maps each guarantee to
// the test that proves it.
package reliability
