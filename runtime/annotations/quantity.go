package annotations

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
)

// parseQuantity parses a Kubernetes resource quantity ("10Gi", "1.5G",
// "512M", "1e9", "1073741824") into bytes, rounding fractions up. It follows
// the grammar of k8s.io/apimachinery's resource.ParseQuantity without pulling
// that module in: <sign?><digits>[.<digits>]<suffix>, where suffix is a
// binary SI suffix (Ki Mi Gi Ti Pi Ei), a decimal SI suffix (m k M G T P E)
// or a decimal exponent (e3, E-2).
func parseQuantity(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty quantity")
	}
	i := 0
	neg := false
	if s[0] == '+' || s[0] == '-' {
		neg = s[0] == '-'
		i++
	}
	start := i
	digits := 0
	for i < len(s) && isDigit(s[i]) {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, fmt.Errorf("%q does not start with a number", s)
	}
	if digits > 40 {
		return 0, fmt.Errorf("number %q has too many digits", s[start:i])
	}
	num, ok := new(big.Rat).SetString(s[start:i])
	if !ok {
		return 0, fmt.Errorf("cannot parse number %q", s[start:i])
	}
	mult, err := suffixMultiplier(s[i:])
	if err != nil {
		return 0, err
	}
	num.Mul(num, mult)
	if neg && num.Sign() != 0 {
		return 0, errors.New("quantity is negative")
	}
	// Round fractional bytes up: "1.0000001" still needs that last byte.
	q, r := new(big.Int).QuoRem(num.Num(), num.Denom(), new(big.Int))
	if r.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() || q.Int64() > math.MaxInt64 {
		return 0, errors.New("quantity is too large")
	}
	return q.Int64(), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func suffixMultiplier(suffix string) (*big.Rat, error) {
	pow := func(base, exp int64) *big.Rat {
		return new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(base), big.NewInt(exp), nil))
	}
	switch suffix {
	case "":
		return big.NewRat(1, 1), nil
	case "Ki":
		return pow(2, 10), nil
	case "Mi":
		return pow(2, 20), nil
	case "Gi":
		return pow(2, 30), nil
	case "Ti":
		return pow(2, 40), nil
	case "Pi":
		return pow(2, 50), nil
	case "Ei":
		return pow(2, 60), nil
	case "m":
		return big.NewRat(1, 1000), nil
	case "k":
		return pow(10, 3), nil
	case "M":
		return pow(10, 6), nil
	case "G":
		return pow(10, 9), nil
	case "T":
		return pow(10, 12), nil
	case "P":
		return pow(10, 15), nil
	case "E":
		return pow(10, 18), nil
	}
	if suffix[0] == 'e' || suffix[0] == 'E' {
		exp := suffix[1:]
		neg := false
		if exp != "" && (exp[0] == '+' || exp[0] == '-') {
			neg = exp[0] == '-'
			exp = exp[1:]
		}
		if exp == "" || len(exp) > 2 || !allDigits(exp) {
			return nil, fmt.Errorf("bad exponent %q (expected e or E and at most two digits)", suffix)
		}
		n := int64(0)
		for _, c := range []byte(exp) {
			n = n*10 + int64(c-'0')
		}
		m := pow(10, n)
		if neg {
			m.Inv(m)
		}
		return m, nil
	}
	return nil, fmt.Errorf("unknown suffix %q (expected Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E or an exponent like e9)", suffix)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

// ParseQuantity parses a Kubernetes quantity of bytes ("10Gi", "20G",
// "1e9"), as resources.limits carry them.
func ParseQuantity(s string) (int64, error) { return parseQuantity(s) }
