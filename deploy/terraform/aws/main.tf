# Three rafter nodes in three availability zones of one VPC. Each node has
# its own ENI (its identity in rafter: --aws-eni, --aws-private-ip) and an
# Elastic IP that is normally associated with that ENI; publish the three
# EIPs in DNS and apply the vip manifest from the `vip_manifest` output.
# The agent moves an EIP to a live node when its home node is lost.
#
# CI runs nothing here (Terraform is not in Debian and providers cannot be
# downloaded there); run `terraform fmt -check` and `terraform validate`
# by hand (docs/operations.md).

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = var.region
}

locals {
  nodes = { for i in range(3) : "n${i + 1}" => i }
}

data "aws_subnet" "node" {
  for_each = local.nodes
  id       = var.subnet_ids[each.value]
}

resource "aws_security_group" "nodes" {
  name        = "${var.name}-nodes"
  description = "rafter nodes: Raft only between nodes, admin API from the nodes and admin_cidr"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "raft" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "Raft, between nodes only"
  referenced_security_group_id = aws_security_group.nodes.id
  ip_protocol                  = "tcp"
  from_port                    = var.raft_port
  to_port                      = var.raft_port
}

# Nodes call each other's admin API to form the cluster, forward writes and
# send liveness probes to the leader.
resource "aws_vpc_security_group_ingress_rule" "admin_nodes" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "admin API between nodes"
  referenced_security_group_id = aws_security_group.nodes.id
  ip_protocol                  = "tcp"
  from_port                    = var.admin_port
  to_port                      = var.admin_port
}

resource "aws_vpc_security_group_ingress_rule" "admin_operators" {
  security_group_id = aws_security_group.nodes.id
  description       = "admin API from operators"
  cidr_ipv4         = var.admin_cidr
  ip_protocol       = "tcp"
  from_port         = var.admin_port
  to_port           = var.admin_port
}

resource "aws_vpc_security_group_ingress_rule" "listeners" {
  for_each          = { for pair in setproduct(var.client_cidrs, var.listener_ports) : "${pair[0]}:${pair[1]}" => pair }
  security_group_id = aws_security_group.nodes.id
  description       = "data plane"
  cidr_ipv4         = each.value[0]
  ip_protocol       = "tcp"
  from_port         = each.value[1]
  to_port           = each.value[1]
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.nodes.id
  description       = "backends, the EC2 API, package downloads"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}

# The instance role may do exactly what the agent checks at start with
# DryRun (agent/aws.go ec2Actions); a Go test keeps iam-policy.json equal
# to that list.
data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "${var.name}-node"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "node" {
  name   = "${var.name}-ec2"
  role   = aws_iam_role.node.id
  policy = file("${path.module}/iam-policy.json")
}

resource "aws_iam_instance_profile" "node" {
  name = "${var.name}-node"
  role = aws_iam_role.node.name
}

resource "aws_network_interface" "node" {
  for_each        = local.nodes
  subnet_id       = var.subnet_ids[each.value]
  security_groups = [aws_security_group.nodes.id]
  tags            = { Name = "${var.name}-${each.key}" }
}

resource "aws_eip" "node" {
  for_each = local.nodes
  domain   = "vpc"
  tags     = { Name = "${var.name}-${each.key}" }
}

# The initial association; from then on the agent owns it (it moves the
# EIP on failover and back home), so Terraform must not fight it.
resource "aws_eip_association" "node" {
  for_each             = local.nodes
  allocation_id        = aws_eip.node[each.key].id
  network_interface_id = aws_network_interface.node[each.key].id
  allow_reassociation  = true
  lifecycle {
    ignore_changes = all
  }
}

resource "aws_instance" "node" {
  for_each             = local.nodes
  ami                  = var.ami_id
  instance_type        = var.instance_type
  iam_instance_profile = aws_iam_instance_profile.node.name

  network_interface {
    network_interface_id = aws_network_interface.node[each.key].id
    device_index         = 0
  }

  metadata_options {
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
  }

  user_data = templatefile("${path.module}/user-data.sh.tftpl", {
    node_id     = each.key
    zone        = data.aws_subnet.node[each.key].availability_zone
    private_ip  = aws_network_interface.node[each.key].private_ip
    eni_id      = aws_network_interface.node[each.key].id
    peer_ips    = join(",", [for k, _ in local.nodes : aws_network_interface.node[k].private_ip])
    admin_port  = var.admin_port
    raft_port   = var.raft_port
    region      = var.region
    package_url = var.package_url
    tls_ca      = var.tls_ca_pem
    tls_cert    = var.tls_nodes[each.key].cert
    tls_key     = var.tls_nodes[each.key].key
    token       = var.admin_token
  })
  user_data_replace_on_change = false

  tags = { Name = "${var.name}-${each.key}" }
}
