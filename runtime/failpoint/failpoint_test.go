package failpoint

import "testing"

func TestCountsDownAndClears(t *testing.T) {
	t.Parallel()
	p := &Points{}
	if err := p.Eval("a"); err != nil {
		t.Fatalf("unarmed failpoint failed: %v", err)
	}
	p.Set("a", 2)
	for i := 0; i < 2; i++ {
		if err := p.Eval("a"); err == nil {
			t.Fatalf("armed failpoint passed on call %d", i)
		}
	}
	if err := p.Eval("a"); err != nil {
		t.Fatalf("failpoint still failing after its count: %v", err)
	}
	p.Set("b", -1)
	for i := 0; i < 5; i++ {
		if p.Eval("b") == nil {
			t.Fatal("forever failpoint passed")
		}
	}
	p.Clear()
	if p.Eval("b") != nil {
		t.Fatal("failpoint survived Clear")
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	p := Parse("x=1, y")
	if p.Eval("x") == nil || p.Eval("x") != nil {
		t.Error("x=1 should fail once")
	}
	if p.Eval("y") == nil || p.Eval("y") == nil {
		t.Error("y should fail until cleared")
	}
	if Parse(" , ") != nil {
		t.Error("an empty spec should arm nothing")
	}
	var none *Points
	if none.Eval("x") != nil {
		t.Error("a nil Points failed")
	}
}
