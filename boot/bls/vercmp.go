package bls

// VerCmp is rpm's version comparison as Fedora's blscfg carries it
// (returns 1 when a is newer, -1 when b is, 0 when equal): alternating
// numeric and alphabetic segments, separators ignored, '~' sorting before
// everything, '+' after a base version, numbers beating letters. It is
// also used, as a documented approximation, for the BLS spec's version
// order (systemd's strverscmp_improved agrees on kernel-style versions).
func VerCmp(a, b string) int {
	if a == b {
		return 0
	}
	one, two := a, b
	isAlnum := func(c byte) bool { return isDigit(c) || isAlpha(c) }
	for len(one) > 0 || len(two) > 0 {
		for len(one) > 0 && !isAlnum(one[0]) && one[0] != '~' && one[0] != '+' {
			one = one[1:]
		}
		for len(two) > 0 && !isAlnum(two[0]) && two[0] != '~' && two[0] != '+' {
			two = two[1:]
		}
		h1, h2 := head(one), head(two)
		if h1 == '~' || h2 == '~' {
			if h1 != '~' {
				return 1
			}
			if h2 != '~' {
				return -1
			}
			one, two = one[1:], two[1:]
			continue
		}
		if h1 == '+' || h2 == '+' {
			if len(one) == 0 {
				return -1
			}
			if len(two) == 0 {
				return 1
			}
			if h1 != '+' {
				return 1
			}
			if h2 != '+' {
				return -1
			}
			one, two = one[1:], two[1:]
			continue
		}
		if len(one) == 0 || len(two) == 0 {
			break
		}
		var seg1, seg2 string
		isnum := isDigit(one[0])
		if isnum {
			seg1, one = span(one, isDigit)
			seg2, two = span(two, isDigit)
		} else {
			seg1, one = span(one, isAlpha)
			seg2, two = span(two, isAlpha)
		}
		if seg1 == "" {
			return -1
		}
		if seg2 == "" {
			if isnum {
				return 1
			}
			return -1
		}
		if isnum {
			for len(seg1) > 0 && seg1[0] == '0' {
				seg1 = seg1[1:]
			}
			for len(seg2) > 0 && seg2[0] == '0' {
				seg2 = seg2[1:]
			}
			if len(seg1) > len(seg2) {
				return 1
			}
			if len(seg2) > len(seg1) {
				return -1
			}
		}
		if seg1 < seg2 {
			return -1
		}
		if seg1 > seg2 {
			return 1
		}
	}
	if len(one) == 0 && len(two) == 0 {
		return 0
	}
	if len(one) == 0 {
		return -1
	}
	return 1
}

func head(s string) byte {
	if s == "" {
		return 0
	}
	return s[0]
}

func span(s string, f func(byte) bool) (string, string) {
	i := 0
	for i < len(s) && f(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
