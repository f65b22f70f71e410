package config

import "testing"

func TestIsPrime(t *testing.T) {
	for n, want := range map[int]bool{0: false, 1: false, 2: true, 251: true, 65537: true, 65536: false, 131071: true} {
		if IsPrime(n) != want {
			t.Errorf("IsPrime(%d) = %v", n, !want)
		}
	}
}
