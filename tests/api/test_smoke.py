from tests.conftest import make_cdr


def test_one_cdr_round_trips_through_the_whole_flow(flow, add_cdrs):
    add_cdrs(make_cdr())
    response = flow.download(flow.token())
    assert response.status_code == 200
    assert response.text.splitlines()[1] == (
        "1780000000.1,2026-05-28 10:00:00,1000,0215550100,42,34,,SIP-Provider,"
        "ANSWERED,Outbound,,,,369392534749"
    )
