//go:build !echod_reactor

package main

import (
	"errors"

	"go.uber.org/zap"
)

// startReactor, in a build without the reactor wiring (server.go needs the
// echod_reactor build tag until reactor/ lands), refuses to start.
func startReactor(config, *zap.Logger) (server, error) {
	return nil, errors.New("this echod was built without the reactor (build tag echod_reactor)")
}
