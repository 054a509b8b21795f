package nvml

import (
	"errors"
	"reflect"
	"testing"

	"github.com/gpumeter/gpumeter/collectors/device"
)

// TestSameIdentityWeighsEveryIdentityField: the identity kept for a GPU is
// replaced when any field identity() keeps differs, a field added to
// device.Device or device.Instance included (this test then fails until
// sameIdentity compares it), and not for the readings identity() drops.
func TestSameIdentityWeighsEveryIdentityField(t *testing.T) {
	base := device.Device{Index: 1, UUID: "GPU-a", Model: "H100", MemoryTotalBytes: 80 << 30, MemoryUsedBytes: 5,
		UtilizationPercent: 40, PowerMilliwatts: 300_000, EnergyMillijoules: 9, MIGEnabled: true,
		Instances: []device.Instance{{UUID: "MIG-a", GPUInstanceID: 1, ComputeInstanceID: 0, Profile: "1g.10gb",
			Slices: 1, TotalSlices: 7, MemoryBytes: 10 << 30, Processes: []device.Process{{PID: 7}}}}}
	kept := identity(base)
	if !sameIdentity(&kept, &base) {
		t.Fatal("a GPU's own identity is not the same as itself")
	}
	// Readings and processes are not identity.
	ignored := map[string]bool{"MemoryUsedBytes": true, "UtilizationPercent": true, "PowerMilliwatts": true,
		"EnergyMillijoules": true, "Processes": true, "Err": true}
	dt := reflect.TypeFor[device.Device]()
	for i := range dt.NumField() {
		f := dt.Field(i)
		d := base
		changeField(t, reflect.ValueOf(&d).Elem().Field(i))
		if ignored[f.Name] {
			if !sameIdentity(&kept, &d) {
				t.Errorf("Device.%s changed: identity replaced, but it is a reading", f.Name)
			}
			continue
		}
		if sameIdentity(&kept, &d) {
			t.Errorf("Device.%s changed: identity kept", f.Name)
		}
	}
	it := reflect.TypeFor[device.Instance]()
	for i := range it.NumField() {
		f := it.Field(i)
		d := base
		d.Instances = []device.Instance{base.Instances[0]}
		changeField(t, reflect.ValueOf(&d.Instances[0]).Elem().Field(i))
		if same := sameIdentity(&kept, &d); same != (f.Name == "Processes") {
			t.Errorf("Instance.%s changed: identity kept %v", f.Name, same)
		}
	}
}

// changeField sets v to a value other than its own.
func changeField(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Interface:
		v.Set(reflect.ValueOf(errors.New("changed")))
	default:
		t.Fatalf("no way to change a %s field: extend changeField", v.Kind())
	}
}
