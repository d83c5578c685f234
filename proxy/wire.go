package proxy

import (
	"fmt"

	"github.com/podstamp/podstamp/enrich"
	"google.golang.org/protobuf/encoding/protowire"
)

// scanRequest checks the wire structure of an Export<Signal>ServiceRequest at
// the levels podstamp walks (the envelope, each Resource<Signal> and its
// Resource) and counts the items it carries (spans, metric data points, log
// records, profiles). Deeper levels are only counted, never judged: their
// defects are the upstream's to reject.
func scanRequest(sig enrich.Signal, b []byte) (items int, err error) {
	idx := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return items, fmt.Errorf("request: bad field tag at offset: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 {
			if typ != protowire.BytesType {
				return items, fmt.Errorf("request: field 1 (resource entries) has wire type %d, want length-delimited", typ)
			}
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return items, fmt.Errorf("request: resource entry %d: %v", idx, protowire.ParseError(m))
			}
			c, err := scanResourceEntry(sig, v)
			if err != nil {
				return items, fmt.Errorf("request: resource entry %d: %w", idx, err)
			}
			items += c
			idx++
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return items, fmt.Errorf("request: field %d: %v", num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	return items, nil
}

// scanResourceEntry checks one Resource<Signal> and counts its items.
func scanResourceEntry(sig enrich.Signal, b []byte) (items int, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return items, fmt.Errorf("bad field tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return items, fmt.Errorf("field %d: %v", num, protowire.ParseError(m))
		}
		switch num {
		case 1: // Resource
			if typ != protowire.BytesType {
				return items, fmt.Errorf("field 1 (resource) has wire type %d, want length-delimited", typ)
			}
			v, _ := protowire.ConsumeBytes(b[:m])
			if err := checkFields(v); err != nil {
				return items, fmt.Errorf("resource: %w", err)
			}
		case 2: // Scope<Signal>
			if typ == protowire.BytesType {
				v, _ := protowire.ConsumeBytes(b[:m])
				items += countScope(sig, v)
			}
		}
		b = b[m:]
	}
	return items, nil
}

// checkFields checks that b is a sequence of well-formed fields.
func checkFields(b []byte) error {
	for len(b) > 0 {
		_, _, n := protowire.ConsumeField(b)
		if n < 0 {
			return fmt.Errorf("bad field: %v", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// countScope counts the items of one Scope<Signal> (field 2 in every signal),
// or for metrics the data points of its metrics. Best effort: it stops at the
// first malformed field.
func countScope(sig enrich.Signal, b []byte) int {
	items := 0
	for len(b) > 0 {
		if b[0] == tagField2Bytes { // fast path: the item tag is one byte
			l, m := consumeLen(b[1:])
			if m < 0 || l > len(b)-1-m {
				return items
			}
			if sig == enrich.Metrics {
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
			if sig == enrich.Metrics {
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
