package dataplane

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/rafterlb/rafter/fsm"
)

// ringPointsPerWeight is how many points a backend of weight 1 gets on the
// consistent-hash ring; capped per backend by ringPointsMax.
const (
	ringPointsPerWeight = 64
	ringPointsMax       = 1024
)

type poolBackend struct {
	st        *backendState
	addr      string
	zone      string
	weight    int
	drain     bool
	evacuated bool
}

// usable: may get new requests regardless of health.
func (b *poolBackend) usable() bool { return b.weight > 0 && !b.drain && !b.evacuated }

type ringPoint struct {
	hash uint64
	idx  int32
}

type pool struct {
	name           string
	state          *poolState
	balancer       string
	hash           fsm.HashPolicy
	zoneAware      bool
	zoneMin        int
	panicThreshold int
	localZone      string
	backends       []poolBackend
	ring           []ringPoint

	mu  sync.Mutex // guards cur (smooth weighted round-robin state)
	cur []int
}

func compilePool(name string, s *fsm.PoolSpec, zones map[string]*fsm.ZoneState, reg *registry, localZone string) *pool {
	p := &pool{
		name: name, state: reg.pool(name), balancer: or(s.Balancer, fsm.BalancerRoundRobin),
		zoneAware: s.ZoneAware, zoneMin: or(s.ZoneMinHealthyPercent, DefaultZoneMinHealthy),
		panicThreshold: s.PanicThreshold, localZone: localZone,
	}
	if s.Hash != nil {
		p.hash = *s.Hash
		p.hash.Header = strings.ToLower(p.hash.Header)
	}
	cs := connSettings{
		maxConns: clampInt(or(s.MaxConnsPerBackend, DefaultMaxConnsPerBackend), maxConnsCeiling),
		maxWait:  clampDuration(or(s.MaxConnWait.D(), DefaultMaxConnWait)),
	}
	cs.tls, cs.sendProxy = reg.poolTLS(name, s.TLS), s.SendProxyProtocol
	for _, b := range s.Backends {
		w := b.Weight
		if w == 0 {
			w = 1 // the manifest default; fsm.Backend documents 0 as no new traffic only once defaults apply
		}
		w = min(max(w, 0), maxWeightCeiling)
		z := zones[b.Zone]
		p.backends = append(p.backends, poolBackend{
			st: reg.backend(name, b.Addr, cs), addr: b.Addr, zone: b.Zone, weight: w,
			drain: b.Drain, evacuated: b.Zone != "" && z != nil && z.Evacuated,
		})
	}
	// Stable order so every node's round-robin and ring agree.
	slices.SortFunc(p.backends, func(a, b poolBackend) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		}
		return 0
	})
	p.cur = make([]int, len(p.backends))
	if p.balancer == fsm.BalancerHash {
		p.ring = buildRing(p.backends)
	}
	return p
}

func buildRing(bs []poolBackend) []ringPoint {
	var ring []ringPoint
	for i, b := range bs {
		n := min(max(b.weight, 1)*ringPointsPerWeight, ringPointsMax)
		for v := 0; v < n; v++ {
			ring = append(ring, ringPoint{hash: hashString(b.addr + "#" + strconv.Itoa(v)), idx: int32(i)})
		}
	}
	slices.SortFunc(ring, func(a, b ringPoint) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.idx - b.idx)
	})
	return ring
}

// pickScratch is per-request memory for picking, reused across requests.
type pickScratch struct {
	cand []int32
	mark []bool
}

// candidates lists the backends a request may go to: usable, healthy
// (unless the pool is in panic), in this node's zone while enough of the
// zone is healthy, and not tried already by this request (unless that
// leaves nothing).
func (p *pool) candidates(h HealthView, sc *pickScratch, tried []int32) []int32 {
	n := len(p.backends)
	if cap(sc.mark) < n {
		sc.mark = make([]bool, n)
	}
	healthy := sc.mark[:n]
	usable, nHealthy, localUsable, localHealthy := 0, 0, 0, 0
	for i := range p.backends {
		b := &p.backends[i]
		healthy[i] = false
		if !b.usable() {
			continue
		}
		usable++
		local := p.zoneAware && p.localZone != "" && b.zone == p.localZone
		if local {
			localUsable++
		}
		if h.Healthy(p.name, b.addr) {
			healthy[i] = true
			nHealthy++
			if local {
				localHealthy++
			}
		}
	}
	if usable == 0 {
		return sc.cand[:0]
	}
	panicMode := p.panicThreshold > 0 && nHealthy*100 < p.panicThreshold*usable
	zoneOnly := !panicMode && localUsable > 0 && localHealthy > 0 && localHealthy*100 >= p.zoneMin*localUsable
	cand := sc.cand[:0]
	// Pass 0: untried backends (local ones only while the zone is healthy
	// enough). Pass 1: a retry that tried every local backend spills to
	// untried ones in other zones before pass 2 repeats a tried one.
	for pass := 0; pass < 3; pass++ {
		if pass == 1 && !zoneOnly {
			continue
		}
		localOnly := zoneOnly && pass != 1
		for i := range p.backends {
			b := &p.backends[i]
			if !b.usable() || (!panicMode && !healthy[i]) || (localOnly && b.zone != p.localZone) {
				continue
			}
			if pass < 2 && slices.Contains(tried, int32(i)) {
				continue
			}
			cand = append(cand, int32(i))
		}
		if len(cand) > 0 || len(tried) == 0 {
			break
		}
	}
	sc.cand = cand
	return cand
}

// pick chooses one of cand (non-empty) with the pool's balancer. key is the
// hash key for the hash balancer (nil: no key, pick at random).
func (p *pool) pick(cand []int32, key []byte, sc *pickScratch) int32 {
	if len(cand) == 1 {
		return cand[0]
	}
	switch p.balancer {
	case fsm.BalancerLeastRequest:
		return p.pickLeast(cand)
	case fsm.BalancerRandom:
		return p.pickRandom(cand)
	case fsm.BalancerHash:
		if key == nil {
			return p.pickRandom(cand)
		}
		return p.pickHash(cand, key, sc)
	}
	return p.pickSWRR(cand)
}

// pickSWRR is nginx's smooth weighted round-robin over the candidates.
func (p *pool) pickSWRR(cand []int32) int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	total, best := 0, int32(-1)
	for _, i := range cand {
		w := p.backends[i].weight
		p.cur[i] += w
		total += w
		if best < 0 || p.cur[i] > p.cur[best] {
			best = i
		}
	}
	p.cur[best] -= total
	return best
}

// pickLeast is power-of-two-choices on active requests per unit of weight.
func (p *pool) pickLeast(cand []int32) int32 {
	i := rand.IntN(len(cand))
	j := rand.IntN(len(cand) - 1)
	if j >= i {
		j++ // two distinct choices
	}
	a, b := cand[i], cand[j]
	ba, bb := &p.backends[a], &p.backends[b]
	if ba.st.active.Load()*int64(bb.weight) <= bb.st.active.Load()*int64(ba.weight) {
		return a
	}
	return b
}

func (p *pool) pickRandom(cand []int32) int32 {
	total := 0
	for _, i := range cand {
		total += p.backends[i].weight
	}
	r := rand.IntN(total)
	for _, i := range cand {
		r -= p.backends[i].weight
		if r < 0 {
			return i
		}
	}
	return cand[len(cand)-1]
}

// pickHash walks the ring clockwise from the key's point to the first
// candidate, so a backend that leaves moves only its own keys.
func (p *pool) pickHash(cand []int32, key []byte, sc *pickScratch) int32 {
	mark := sc.mark[:len(p.backends)]
	clear(mark)
	for _, i := range cand {
		mark[i] = true
	}
	h := hashBytes(key)
	start, _ := slices.BinarySearchFunc(p.ring, h, func(rp ringPoint, t uint64) int {
		switch {
		case rp.hash < t:
			return -1
		case rp.hash > t:
			return 1
		}
		return 0
	})
	for k := 0; k < len(p.ring); k++ {
		rp := p.ring[(start+k)%len(p.ring)]
		if mark[rp.idx] {
			return rp.idx
		}
	}
	return cand[0]
}

// hashBytes is FNV-1a with a final mix. It is fixed (not seeded per
// process) so every node sends a key to the same backend.
func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return mix64(h)
}

func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
