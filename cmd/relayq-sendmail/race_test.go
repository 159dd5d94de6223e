//go:build race

package main

// raceEnabled says the test binary runs under the race detector, whose
// runtime changes what packages allocate when they initialise
// (TestInitsStayLight).
const raceEnabled = true
