//go:build linux

package poller

import "fmt"

// An io_uring poller keeps its record of each armed tag (a TagRecord) in
// its ledger, by tag index, or, given Options.Records (with
// CallerDisarms), where the caller keeps the tag's request. These four are
// the only places that tell the two apart.

// rec returns tag's record while tag is armed, else nil.
func (p *uringPoller) rec(tag uint64) *TagRecord {
	if p.ext != nil {
		if r := p.ext.Record(tag); r != nil && r.has(recArmed) {
			return r
		}
		return nil
	}
	if r := p.g.get(tag); r != nil {
		return &r.TagRecord
	}
	return nil
}

// checkFree refuses a tag already armed (ErrTagInUse: its index, in the
// ledger) or, with Records, one that names no request of the caller's.
func (p *uringPoller) checkFree(tag uint64) error {
	if p.ext == nil {
		return p.g.free(tag)
	}
	r := p.ext.Record(tag)
	switch {
	case r == nil:
		return fmt.Errorf("%w: %#x names no live request of the caller's (Options.Records)", ErrBadTag, tag)
	case r.has(recArmed):
		return fmt.Errorf("%w: %#x", ErrTagInUse, tag)
	}
	return nil
}

// addRec records tag as armed on fd for events; checkFree allowed it.
func (p *uringPoller) addRec(tag uint64, fd int, events uint32) *TagRecord {
	if p.ext == nil {
		rec, err := p.g.add(tag, fd, events)
		if err != nil {
			panic(err.Error()) // checkFree said the index was free, and reaping frees only
		}
		return &rec.TagRecord
	}
	r := p.ext.Record(tag)
	ev := packEv(events)
	if r == nil || ev.mask() != events {
		panic(fmt.Sprintf("poller: tag %#x: record %v for events %#x", tag, r, events))
	}
	*r = TagRecord{ev: ev, st: recArmed}
	p.g.n++
	return r
}

// dropRec ends tag's record (its last Event is decided).
func (p *uringPoller) dropRec(tag uint64, r *TagRecord) {
	if r.has(recDisarming) {
		p.disarming--
	}
	if p.ext != nil {
		*r = TagRecord{}
		p.g.n--
		return
	}
	rec := p.g.get(tag)
	fd := int(rec.fd)
	p.g.remove(rec)
	p.g.fds.releaseIfEmpty(fd)
}
