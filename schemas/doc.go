// Package schemas holds the event contract (docs/contract.md, Events): the Go
// types of the envelope and file scan object, the JSON Schemas (draft 2020-12)
// that define them, embedded in the binary, and Validate / ValidateData, which
// enforce the schemas plus the byte-level rules of docs/contract.md, Envelope,
// that JSON Schema cannot express (key order, compactness, UTF-8, duplicate
// keys). README.md beside the schema files lists every decision.
package schemas
