"""The evaluate report's price table and the serving-hardware contract agree."""


def test_the_price_tables_gpus_are_the_serving_hardware_tables():
    """instance_prices.json names each instance's GPU for pricing; contracts/serving_hardware.py
    per family for the kernel rules: the two must say the same."""
    from contracts.serving_hardware import GPU_BY_FAMILY, family_of
    from jobs.evaluate.cost import PriceTable

    checked = 0
    for name, spec in PriceTable.load().instances.items():
        if not spec.get("accelerators"):
            continue
        gpu = GPU_BY_FAMILY[family_of(name)]
        assert float(spec["compute_capability"]) == gpu.compute_capability, name
        assert spec["accelerator"].startswith(gpu.name), (name, spec["accelerator"], gpu.name)
        checked += 1
    assert checked >= 5
