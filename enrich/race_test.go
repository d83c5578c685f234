//go:build race

package enrich_test

// raceEnabled: sync.Pool drops some items under the race detector.
const raceEnabled = true
