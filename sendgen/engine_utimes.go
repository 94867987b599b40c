package sendgen

import "container/list"

// Directory times are cached instead of sent at once (kernel 6.3+): a
// directory usually gets more entries from inodes with higher numbers, and
// each entry change at the receiver would overwrite its times again. The
// cache holds at most maxDirUtimes directories; the least recently used are
// sent after each inode, the rest before END.
const maxDirUtimes = 64

type utimesCache struct {
	lru   *list.List // of inoGen, least recently used first
	index map[inoGen]*list.Element
}

func (c *utimesCache) init() {
	c.lru = list.New()
	c.index = map[inoGen]*list.Element{}
}

// cacheDirUtimes schedules UTIMES for directory (ino, gen).
func (s *sendCtx) cacheDirUtimes(ino, gen uint64) error {
	c := &s.dirUtimes
	k := inoGen{ino, gen}
	if e, ok := c.index[k]; ok {
		c.lru.MoveToBack(e)
		return nil
	}
	c.index[k] = c.lru.PushBack(k)
	return nil
}

// trimDirUtimes sends the least recently used cached times beyond the limit.
func (s *sendCtx) trimDirUtimes() error {
	c := &s.dirUtimes
	for c.lru.Len() > maxDirUtimes {
		if err := s.sendCachedUtimes(c.lru.Front()); err != nil {
			return err
		}
	}
	return nil
}

// flushDirUtimes sends all cached times, most recently used first.
func (s *sendCtx) flushDirUtimes() error {
	c := &s.dirUtimes
	for c.lru.Len() > 0 {
		if err := s.sendCachedUtimes(c.lru.Back()); err != nil {
			return err
		}
	}
	return nil
}

// sendCachedUtimes sends the times of a cached directory and forgets it.
func (s *sendCtx) sendCachedUtimes(e *list.Element) error {
	k := e.Value.(inoGen)
	if err := s.sendUtimes(k.ino, k.gen); err != nil {
		return err
	}
	s.dirUtimes.lru.Remove(e)
	delete(s.dirUtimes.index, k)
	return nil
}
