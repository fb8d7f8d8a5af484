// The one build of every genai-fleet AMI. Steps shared by both flavours run for every source;
// flavour-specific steps are gated with `only` (the single gating mechanism used here).

locals {
  build_stamp = formatdate("YYYYMMDDhhmmss", timestamp())
  // Provisioning scripts run as root with the provisioner's environment variables.
  sudo_execute = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
  stage_dir    = "/tmp/genai-fleet"
  // How the worker agent is installed (install-agent.sh reads these; where it goes, the service
  // user and every path come from the instance contract, files/instance-contract.env).
  agent_env = [
    "PYTHON=${var.agent_python}",
    "AGENT_SOURCE=${local.stage_dir}/agent",
    "CONSTRAINTS=${local.stage_dir}/agent/constraints.txt",
    "FILES_DIR=${local.stage_dir}/files",
    "BOOT_SCRIPTS_DIR=${local.stage_dir}/boot",
    "GIT_REVISION=${var.git_revision}",
    "AMI_VERSION=${var.ami_version}",
  ]
}

build {
  sources = [
    "source.amazon-ebs.cuda",
    "source.amazon-ebs.neuron",
  ]

  // Fail fast unless the build instance answers IMDSv2 only (metadata_options took effect).
  provisioner "shell" {
    script          = "${path.root}/scripts/check-imdsv2.sh"
    execute_command = local.sudo_execute
  }

  // Stage the agent wheel, its pinned constraints, systemd units and boot scripts.
  provisioner "shell" {
    inline = ["mkdir -p ${local.stage_dir}/agent ${local.stage_dir}/files ${local.stage_dir}/boot"]
  }

  provisioner "file" {
    source      = "${var.agent_dist_dir}/"
    destination = "${local.stage_dir}/agent/"
  }

  provisioner "file" {
    source      = "${path.root}/../runtime-requirements.txt"
    destination = "${local.stage_dir}/agent/constraints.txt"
  }

  provisioner "file" {
    source      = "${path.root}/files/"
    destination = "${local.stage_dir}/files/"
  }

  provisioner "file" {
    source      = "${path.root}/scripts/boot/"
    destination = "${local.stage_dir}/boot/"
  }

  // OS packages, the agent's Python, the service user and directories.
  provisioner "shell" {
    script           = "${path.root}/scripts/install-base.sh"
    environment_vars = ["AGENT_PYTHON=${var.agent_python}", "FILES_DIR=${local.stage_dir}/files"]
    execute_command  = local.sudo_execute
  }

  // Accelerator checks: the source AMI's driver and toolkit must work before anything is baked.
  provisioner "shell" {
    script          = "${path.root}/scripts/verify-cuda.sh"
    execute_command = local.sudo_execute
    only            = ["amazon-ebs.cuda"]
  }

  provisioner "shell" {
    script          = "${path.root}/scripts/verify-neuron.sh"
    execute_command = local.sudo_execute
    only            = ["amazon-ebs.neuron"]
  }

  // The worker agent (this repository's runtime, pinned to git_revision) and its systemd units.
  provisioner "shell" {
    script = "${path.root}/scripts/install-agent.sh"
    environment_vars = concat(local.agent_env, [
      "FLAVOR=cuda",
      "EXTRA_PIP_PACKAGES=${join(" ", var.cuda_agent_pip_packages)}",
      "EXTRA_INDEX_URL=${var.cuda_agent_pip_index_url}",
    ])
    execute_command = local.sudo_execute
    only            = ["amazon-ebs.cuda"]
  }

  provisioner "shell" {
    script = "${path.root}/scripts/install-agent.sh"
    environment_vars = concat(local.agent_env, [
      "FLAVOR=neuron",
      "EXTRA_PIP_PACKAGES=${join(" ", var.neuron_pip_packages)}",
      "EXTRA_INDEX_URL=${var.neuron_pip_index_url}",
    ])
    execute_command = local.sudo_execute
    only            = ["amazon-ebs.neuron"]
  }

  // CUDA backends: ComfyUI always, the A1111 WebUI when install_a1111 is true.
  provisioner "shell" {
    script = "${path.root}/scripts/install-comfyui.sh"
    environment_vars = [
      "COMFYUI_VERSION=${var.comfyui_version}",
      "AGENT_PYTHON=${var.agent_python}",
      "TORCH_VERSION=${var.torch_version}",
      "TORCH_INDEX_URL=${var.torch_index_url}",
      "FILES_DIR=${local.stage_dir}/files",
    ]
    execute_command = local.sudo_execute
    only            = ["amazon-ebs.cuda"]
  }

  // Custom node packs (pinned) and the node catalog recorded from ComfyUI's /object_info (docs/amis.md).
  provisioner "shell" {
    script = "${path.root}/scripts/install-comfyui-nodes.sh"
    environment_vars = [
      "COMFYUI_CUSTOM_NODES=${jsonencode(var.comfyui_custom_nodes)}",
      "FILES_DIR=${local.stage_dir}/files",
      "CATALOG_COPY=${local.stage_dir}/node-catalog.json",
    ]
    execute_command = local.sudo_execute
    only            = ["amazon-ebs.cuda"]
  }

  // The catalog comes back to the machine running the build: genai-ami publishes it beside the AMI id.
  provisioner "file" {
    direction   = "download"
    source      = "${local.stage_dir}/node-catalog.json"
    destination = "${path.root}/node-catalog-cuda.json"
    only        = ["amazon-ebs.cuda"]
  }

  provisioner "shell" {
    script = "${path.root}/scripts/install-a1111.sh"
    environment_vars = [
      "INSTALL_A1111=${var.install_a1111}",
      "A1111_VERSION=${var.a1111_version}",
      "STABLE_DIFFUSION_REPO=${var.a1111_stable_diffusion_repo}",
      "STABLE_DIFFUSION_COMMIT_HASH=${var.a1111_stable_diffusion_commit}",
      "STABLE_DIFFUSION_XL_REPO=${var.a1111_stable_diffusion_xl_repo}",
      "STABLE_DIFFUSION_XL_COMMIT_HASH=${var.a1111_stable_diffusion_xl_commit}",
      "AGENT_PYTHON=${var.agent_python}",
      "TORCH_VERSION=${var.torch_version}",
      "TORCH_INDEX_URL=${var.torch_index_url}",
      "FILES_DIR=${local.stage_dir}/files",
    ]
    execute_command = local.sudo_execute
    only            = ["amazon-ebs.cuda"]
  }

  // CloudWatch agent: installed only; the monitoring component writes its config from SSM at boot.
  provisioner "shell" {
    script = "${path.root}/scripts/install-cloudwatch-agent.sh"
    environment_vars = [
      "CWAGENT_VERSION=${var.cloudwatch_agent_version}",
      "CWAGENT_KEY_FINGERPRINT=${var.cloudwatch_agent_key_fingerprint}",
    ]
    execute_command = local.sudo_execute
  }

  provisioner "shell" {
    script           = "${path.root}/scripts/install-neuron-monitor.sh"
    environment_vars = ["FILES_DIR=${local.stage_dir}/files", "BOOT_SCRIPTS_DIR=${local.stage_dir}/boot"]
    execute_command  = local.sudo_execute
    only             = ["amazon-ebs.neuron"]
  }

  // Last: caches, logs, host keys, cloud-init state, history; fails if a secret was left behind.
  provisioner "shell" {
    script          = "${path.root}/scripts/cleanup.sh"
    execute_command = local.sudo_execute
  }

  post-processor "manifest" {
    output     = "${path.root}/manifest.json"
    strip_path = true
    custom_data = {
      version      = var.ami_version
      git_revision = var.git_revision
    }
  }
}
