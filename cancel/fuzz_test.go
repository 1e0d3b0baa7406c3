package cancel_test

import (
	"fmt"
	"testing"
)

// decodeScenario builds a scenario from the first bytes of a fuzz input:
//
//	byte 0: bit 0 epoll, bit 1 closer, bit 2 deliver before kernel cancel,
//	        bit 3 a second request
//	byte 1: bits 0-1 how many cancellers (0-3); bits 2-4 whom each targets
//	byte 2, 3: each request's arms, one nibble per arm (two arms)
//
// It repairs what would make a run unable to end: a spurious last arm
// becomes ready, and a request that never fires gets a canceller if the
// scenario has neither one for it nor a closer.
func decodeScenario(b []byte) (*scenario, []byte) {
	for len(b) < 4 {
		b = append(b, 0)
	}
	sc := &scenario{name: "fuzz"}
	sc.epoll = b[0]&1 != 0
	sc.closer = b[0]&2 != 0
	sc.deliverFirst = b[0]&4 != 0
	nreq := 1
	if b[0]&8 != 0 {
		nreq = 2
	}
	for c := range int(b[1] & 3) {
		sc.cancellers = append(sc.cancellers, int(b[1]>>(2+c)&1)%nreq)
	}
	menu := []armScript{ready, failed, spurious, never, refuse, atSubmit, ready, spurious}
	for r := range nreq {
		arms := []armScript{menu[b[2+r]&7], menu[b[2+r]>>4&7]}
		if arms[0] != spurious {
			arms = arms[:1]
		}
		if last := &arms[len(arms)-1]; *last == spurious {
			*last = ready
		}
		targeted := sc.closer
		for _, t := range sc.cancellers {
			targeted = targeted || t == r
		}
		if !targeted {
			for i := range arms {
				if arms[i] == never {
					sc.cancellers = append(sc.cancellers, r)
					break
				}
			}
		}
		sc.reqs = append(sc.reqs, arms)
	}
	return sc, b[4:]
}

// FuzzSchedule decodes a scenario and a schedule from its input and plays
// it in the model world, checking the same invariants as TestInterleavings.
// Its seed corpus (testdata/fuzz/FuzzSchedule) runs in every go test.
func FuzzSchedule(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0})                         // ready vs cancel, first choices
	f.Add([]byte{0x0b, 0x0e, 0x02, 0x03, 5, 4, 3, 2}) // two requests, epoll, closer
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, sched := decodeScenario(data)
		w := newWorld(sc)
		i := 0
		err := w.run(func(n int) int {
			if i >= len(sched) {
				return 0
			}
			c := int(sched[i]) % n
			i++
			return c
		})
		if err != nil {
			t.Fatalf("%s: %v", describe(sc), err)
		}
	})
}

func describe(sc *scenario) string {
	return fmt.Sprintf("epoll=%v closer=%v deliverFirst=%v reqs=%+v cancellers=%v",
		sc.epoll, sc.closer, sc.deliverFirst, sc.reqs, sc.cancellers)
}
