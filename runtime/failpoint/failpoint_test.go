package failpoint

import "testing"

func TestCountsDownAndClears(t *testing.T) {
	Clear()
	if err := Eval("a"); err != nil {
		t.Fatalf("unarmed failpoint failed: %v", err)
	}
	Set("a", 2)
	for i := 0; i < 2; i++ {
		if err := Eval("a"); err == nil {
			t.Fatalf("armed failpoint passed on call %d", i)
		}
	}
	if err := Eval("a"); err != nil {
		t.Fatalf("failpoint still failing after its count: %v", err)
	}
	Set("b", -1)
	for i := 0; i < 5; i++ {
		if Eval("b") == nil {
			t.Fatal("forever failpoint passed")
		}
	}
	Clear()
	if Eval("b") != nil {
		t.Fatal("failpoint survived Clear")
	}
}

func TestFromEnvironment(t *testing.T) {
	mu.Lock()
	loaded, active = false, map[string]int{}
	mu.Unlock()
	t.Setenv(EnvVar, "x=1, y")
	if Eval("x") == nil || Eval("x") != nil {
		t.Error("x=1 should fail once")
	}
	if Eval("y") == nil || Eval("y") == nil {
		t.Error("y should fail until cleared")
	}
	Clear()
}
