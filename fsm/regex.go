package fsm

import (
	"fmt"
	"regexp"
	"regexp/syntax"
)

// Cost bounds on every regex in a spec (match.path.regex and the regex of
// match.headers and match.query). Go's regexp is linear in time, but its
// compiled program is not small: a counted repeat is expanded into that
// many copies of its operand, and a 4,096-character path regex of
// `\pL{1,1000}` repeats took each node from 22 MB to 587 MB and made the
// leader step down. Matching costs at most program size × input length
// per request, so bounding the program bounds both the memory a route
// holds and the CPU a request can make it spend (the data plane bounds
// the input).
const (
	// maxRegexLen bounds a pattern's length in bytes: longer than any
	// route regex seen in practice, and too short to hide a large
	// program in without a counted repeat.
	maxRegexLen = 1024
	// maxRegexRepeat bounds n and m in {n}, {n,} and {n,m}. Unbounded
	// runs (+, *) compile to a loop and cost nothing extra; a counted
	// repeat is compiled to m copies, so {1,100} is the most a path
	// segment or token needs before + is the better tool.
	maxRegexRepeat = 100
	// maxRegexProgram bounds the compiled program in instructions, as the
	// data plane compiles the pattern (anchored: ^(?:...)$). A typical
	// route regex (`/api/v[0-9]+/users/[a-z0-9-]{1,64}`) takes about 150;
	// 1000 leaves room for several bounded segments, while an 8 KiB path
	// costs at most 8 million steps to match.
	maxRegexProgram = 1000
)

// regexProblem describes why re is not an acceptable regex, or returns "".
// It refuses a costly pattern before compiling it, so validating even a
// pathological pattern is quick and takes little memory.
func regexProblem(re string) string {
	if len(re) > maxRegexLen {
		return fmt.Sprintf("%d bytes long, at most %d", len(re), maxRegexLen)
	}
	// The flags regexp.Compile uses, so exactly the same patterns parse.
	tree, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return err.Error()
	}
	if n := maxRepeat(tree); n > maxRegexRepeat {
		return fmt.Sprintf("repeat count %d, at most %d (use + or * for longer runs)", n, maxRegexRepeat)
	}
	// The estimate is an upper bound computed on the parse tree; compile
	// for the exact figure only when the estimate is within reach.
	if est := progEstimate(tree) + 8; est > 4*maxRegexProgram {
		return fmt.Sprintf("compiled program would have about %d instructions, at most %d", est, maxRegexProgram)
	}
	anchored, err := syntax.Parse(`^(?:`+re+`)$`, syntax.Perl)
	if err != nil {
		return err.Error()
	}
	prog, err := syntax.Compile(anchored.Simplify())
	if err != nil {
		return err.Error()
	}
	if n := len(prog.Inst); n > maxRegexProgram {
		return fmt.Sprintf("compiled program has %d instructions, at most %d", n, maxRegexProgram)
	}
	if _, err := regexp.Compile(re); err != nil {
		return err.Error()
	}
	return ""
}

// maxRepeat is the largest count of any {n,m} repeat in re.
func maxRepeat(re *syntax.Regexp) int {
	n := 0
	if re.Op == syntax.OpRepeat {
		n = max(re.Min, re.Max)
	}
	for _, sub := range re.Sub {
		n = max(n, maxRepeat(sub))
	}
	return n
}

// progEstimate is an upper bound on the instructions syntax.Compile emits
// for re, saturating so that nested repeats cannot overflow it.
func progEstimate(re *syntax.Regexp) int {
	const ceiling = 1 << 30
	sum := func() int {
		n := 0
		for _, sub := range re.Sub {
			n = min(n+progEstimate(sub), ceiling)
		}
		return n
	}
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune)
	case syntax.OpConcat:
		return sum()
	case syntax.OpAlternate:
		return min(sum()+len(re.Sub), ceiling)
	case syntax.OpCapture, syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		return min(sum()+2, ceiling)
	case syntax.OpRepeat:
		copies := max(re.Min, re.Max)
		return min((sum()+2)*copies+2, ceiling)
	}
	return 1
}
