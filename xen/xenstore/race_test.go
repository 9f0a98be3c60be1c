//go:build race

package xenstore

// raceEnabled: the race detector makes each event ~20x dearer.
const raceEnabled = true
