package enrich

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// countScope counts the items of one Scope<Signal> (field 2 in every signal),
// or for metrics the data points of its metrics. Best effort: it stops at the
// first malformed field.
func countScope(sig Signal, b []byte) int {
	items := 0
	for len(b) > 0 {
		if b[0] == tagField2Bytes { // fast path: the item tag is one byte
			l, m := consumeLen(b[1:])
			if m < 0 || l > len(b)-1-m {
				return items
			}
			if sig == Metrics {
				items += countDataPoints(b[1+m : 1+m+l])
			} else {
				items++
			}
			b = b[1+m+l:]
			continue
		}
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return items
		}
		b = b[n:]
		if num == 2 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return items
			}
			if sig == Metrics {
				items += countDataPoints(v)
			} else {
				items++
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return items
		}
		b = b[m:]
	}
	return items
}

const (
	tagField1Bytes = 1<<3 | byte(protowire.BytesType)
	tagField2Bytes = 2<<3 | byte(protowire.BytesType)
)

// consumeLen decodes a length varint, with a fast path for 1 and 2 bytes.
func consumeLen(b []byte) (int, int) {
	if len(b) > 0 && b[0] < 0x80 {
		return int(b[0]), 1
	}
	if len(b) > 1 && b[1] < 0x80 {
		return int(b[0]&0x7f) | int(b[1])<<7, 2
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 || v > uint64(len(b)) {
		return 0, -1
	}
	return int(v), n
}

// countDataPoints counts the data points of one Metric: field 1 of its gauge
// (5), sum (7), histogram (9), exponential histogram (10) or summary (11).
func countDataPoints(b []byte) int {
	points := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return points
		}
		b = b[n:]
		switch {
		case typ == protowire.BytesType && (num == 5 || num == 7 || num == 9 || num == 10 || num == 11):
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return points
			}
			points += countField1(v)
			b = b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return points
			}
			b = b[m:]
		}
	}
	return points
}

// countField1 counts occurrences of length-delimited field 1.
func countField1(b []byte) int {
	c := 0
	for len(b) > 0 {
		if b[0] == tagField1Bytes {
			l, m := consumeLen(b[1:])
			if m < 0 || l > len(b)-1-m {
				return c
			}
			c++
			b = b[1+m+l:]
			continue
		}
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return c
		}
		if num == 1 && typ == protowire.BytesType {
			c++
		}
		b = b[n:]
	}
	return c
}
