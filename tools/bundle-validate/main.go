// Command bundle-validate checks an OLM bundle directory with the validators of
// github.com/operator-framework/api, the library behind `operator-sdk bundle validate`:
//
//	bundle-validate [-suite default|operatorhub] [-k8s-version 1.31.0] DIR
//
// The "default" suite is what `operator-sdk bundle validate` runs (the bundle format, its CSV and
// CRDs, and the objects it ships); "operatorhub" adds the optional suite=operatorframework
// checks: OperatorHub's CSV requirements, capabilities and categories, good practices and APIs
// removed in the given Kubernetes version. MultipleArchitecturesValidator is left out: it
// inspects the images in a registry. Prints one JSON object per finding
// ({"validator","level","name","field","detail"}) and exits 1 when any is an error.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	apimanifests "github.com/operator-framework/api/pkg/manifests"
	"github.com/operator-framework/api/pkg/validation"
	"github.com/operator-framework/api/pkg/validation/errors"
	validator "github.com/operator-framework/api/pkg/validation/interfaces"
)

type finding struct {
	Suite  string `json:"suite"`
	Level  string `json:"level"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	Field  string `json:"field,omitempty"`
	Detail string `json:"detail"`
}

func main() {
	suite := flag.String("suite", "default", "default or operatorhub")
	k8sVersion := flag.String("k8s-version", "", "Kubernetes version for the removed-API check")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: bundle-validate [-suite default|operatorhub] [-k8s-version V] DIR")
		os.Exit(2)
	}
	bundle, err := apimanifests.GetBundleFromDir(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "bundle-validate: cannot load bundle %q: %v\n", flag.Arg(0), err)
		os.Exit(1)
	}
	var validators validator.Validators
	switch *suite {
	case "default":
		validators = validation.DefaultBundleValidators.WithValidators(validation.ObjectValidator)
	case "operatorhub":
		validators = validator.Validators{
			validation.OperatorHubV2Validator,
			validation.StandardCapabilitiesValidator,
			validation.StandardCategoriesValidator,
			validation.GoodPracticesValidator,
			validation.AlphaDeprecatedAPIsValidator,
		}
	default:
		fmt.Fprintf(os.Stderr, "bundle-validate: unknown suite %q (default, operatorhub)\n", *suite)
		os.Exit(2)
	}
	objs := bundle.ObjectsToValidate()
	if *k8sVersion != "" {
		objs = append(objs, map[string]string{"k8s-version": *k8sVersion})
	}
	failed := false
	out := json.NewEncoder(os.Stdout)
	for _, result := range validators.Validate(objs...) {
		for _, list := range [][]errors.Error{result.Errors, result.Warnings} {
			for _, e := range list {
				if e.Level == errors.LevelError {
					failed = true
				}
				_ = out.Encode(finding{
					Suite: *suite, Level: string(e.Level), Name: result.Name,
					Type: string(e.Type), Field: e.Field, Detail: e.Error(),
				})
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}
