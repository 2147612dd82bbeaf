package tenantfile

import "testing"

// FuzzParse: Parse never panics, and a file it accepts is written and read
// back to the same tenant (no change between the two).
func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleYAML))
	f.Add([]byte(`{"format":"keygate.tenant","version":1,"tenant":{"id":"a"},"users":[{"id":"u","name":"n","meta":{"a":[1,{"b":null}]}}]}`))
	f.Add([]byte("format: keygate.tenant\nversion: 1\ntenant: {id: a}\nusers: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		out, err := Marshal(file, "yaml")
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("a written file does not parse: %v\n%s", err, out)
		}
		if n := Changes(Plan(back, file, true)); n != 0 {
			t.Fatalf("round trip changed %d things", n)
		}
	})
}
