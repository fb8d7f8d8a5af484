// Neuron flavour: AWS Inferentia2 / Trainium instances; the agent runs its diffusers /
// optimum-neuron backend in process. Steps live in build.pkr.hcl.

locals {
  neuron_ami_name = "genai-fleet-neuron-${var.ami_version}-${substr(var.git_revision, 0, 12)}-${local.build_stamp}"
  neuron_tags = merge(var.tags, {
    Name              = local.neuron_ami_name
    Project           = "genai-fleet"
    Flavor            = "neuron"
    Version           = var.ami_version
    GitRevision       = var.git_revision
    SourceAMI         = "{{ .SourceAMI }}"
    SourceAMIName     = "{{ .SourceAMIName }}"
    BuildInstanceType = var.neuron_build_instance_type
  })
}

source "amazon-ebs" "neuron" {
  region          = var.region
  ami_name        = local.neuron_ami_name
  ami_description = "genai-fleet Neuron worker ${var.ami_version} (${substr(var.git_revision, 0, 12)}) on the Deep Learning AMI Neuron, Ubuntu 22.04"
  ami_users       = var.ami_users
  instance_type   = var.neuron_build_instance_type
  subnet_id       = var.subnet_id
  ssh_username    = "ubuntu"
  ssh_interface   = var.ssh_interface

  // The name is pinned to one release (Neuron SDK 2.20, release.auto.pkrvars.hcl). AWS deprecates public
  // AMIs at most two years after creation, and DescribeImages hides a deprecated image from other
  // accounts unless deprecated images are asked for; a deregistered one is gone either way (tools/ami_preflight.py
  // checks before the build and says so).
  source_ami_filter {
    filters = {
      name                = var.neuron_source_ami_name
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners             = ["amazon"]
    most_recent        = true
    include_deprecated = true
  }

  // IMDSv2 only, on the build instance and on every instance launched from the AMI.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  imds_support = "v2.0"

  // Encrypted gp3 root volume; the AMI's snapshot inherits the encryption.
  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.root_volume_size_gb
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 250
    encrypted             = true
    kms_key_id            = var.kms_key_id
    delete_on_termination = true
  }
  encrypt_boot = true
  kms_key_id   = var.kms_key_id

  ena_support     = true
  tags            = local.neuron_tags
  snapshot_tags   = local.neuron_tags
  run_tags        = local.neuron_tags
  run_volume_tags = local.neuron_tags
}
