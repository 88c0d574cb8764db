output "elastic_ips" {
  description = "Publish these in DNS (round-robin)."
  value       = { for k, e in aws_eip.node : k => e.public_ip }
}

output "private_ips" {
  value = { for k, n in aws_network_interface.node : k => n.private_ip }
}

output "admin_addresses" {
  value = [for k, n in aws_network_interface.node : "https://${n.private_ip}:${var.admin_port}"]
}

output "vip_manifest" {
  description = "Apply with `rafter apply -f`: one aws-eip VIP per node, at home on it."
  value = join("---\n", [for k, e in aws_eip.node : <<-YAML
    kind: vip
    name: edge-${k}
    spec: {provider: aws-eip, allocation_id: ${e.id}, home_node: ${k}}
    YAML
  ])
}
