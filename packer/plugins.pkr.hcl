// Packer and plugin versions. These templates need Packer >= 1.10 and the Amazon plugin >= 1.3
// (`packer init` installs it): metadata_options and imds_support are plugin features. Debian's
// packer 1.6.6 rejects this block; the checks in tests/unit/test_packer.py run `packer fmt` on
// every file and `packer validate -syntax-only` on the others there.

packer {
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      version = ">= 1.3.0, < 2.0.0"
      source  = "github.com/hashicorp/amazon"
    }
  }
}
