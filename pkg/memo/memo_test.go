package memo

import "testing"

func TestMap(t *testing.T) {
	m := Map[string, int]{Max: 3}
	if _, ok := m.Get("a"); ok {
		t.Fatal("empty memo remembers a")
	}
	m.Put("a", 1)
	m.Put("b", 2)
	m.Put("a", 3) // a new value for a key it holds does not count twice
	if v, ok := m.Get("a"); !ok || v != 3 || m.Len() != 2 {
		t.Fatalf("a = %d %v, len %d", v, ok, m.Len())
	}
	m.Put("c", 4)
	m.Put("d", 5) // full at 3: starts over with d alone
	if m.Len() != 1 {
		t.Fatalf("len %d after overflowing, want 1", m.Len())
	}
	if _, ok := m.Get("a"); ok {
		t.Fatal("a survived starting over")
	}
	if v, ok := m.Get("d"); !ok || v != 5 {
		t.Fatalf("d = %d %v", v, ok)
	}
}
