// Package deploy is the dispatcher's container and local-stack packaging:
//
//	Dockerfile                   one target per docker-compose.yml service
//	Dockerfile.dockerignore      build-context exclusions for it
//	otel-collector.yaml          the compose stack's collector pipeline
//	demo.sh                      the compose stack's webhook-setup and demo steps
//	healthcheck/                 the probe program copied into shell-less images
//	compose_test.go              checks docker-compose.yml, the Dockerfile, the
//	                             Taskfile and README.md against the code,
//	                             without a Docker engine
//
// It has no Go API.
package deploy
