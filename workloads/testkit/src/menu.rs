/// The stock `menu` (the kitchen's `GET /menu` body, or the gateway's `GET /api/menu`) lists for `menu_id`;
/// fails the test when the dish is not on it.
pub fn stock_on_menu(menu: &serde_json::Value, menu_id: &str) -> i64 {
    menu.as_array()
        .unwrap()
        .iter()
        .find(|dish| dish["menuId"] == menu_id)
        .unwrap()["stock"]
        .as_i64()
        .unwrap()
}
