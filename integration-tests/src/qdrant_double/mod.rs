#[cfg(test)]
mod scratch {
    use serde::Deserialize;
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Filter { should: Option<Vec<serde_json::Value>>, min_should: Option<serde_json::Value>, must: Option<Vec<serde_json::Value>>, must_not: Option<Vec<serde_json::Value>> }
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner { vector: Vec<f32>, limit: usize, filter: Option<Filter>, with_payload: Option<serde_json::Value> }
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer { #[serde(flatten)] inner: Inner, shard_key: Option<serde_json::Value> }
    #[test]
    fn positions() {
        for s in [r#"{"limit": 3}"#, r#"{"vector": [0.2, 0.1, 0.9, 0.7], "limit": 3, "filter": {"must": [], "bogus": 1}}"#, r#"{"vector": [0.2, 0.1, 0.9, 0.7], "limit": -1}"#, "{\"vector\": [1,2,3,4], \"limit\": "] {
            println!("{:?}", serde_json::from_str::<Outer>(s).unwrap_err().to_string());
            println!("{:?}", serde_json::from_str::<Inner>(s).unwrap_err().to_string());
        }
    }
}
