//! A Casbin adapter over our own database pool, loading one tenant's rules.

use async_trait::async_trait;
use casbin::error::AdapterError;
use casbin::{Adapter, Filter, Model};

use crate::store::StoreError;
use crate::store::db::Db;
use crate::store::db::policies::{self, RuleRow};

/// Reads and writes the `casbin_rules` of one tenant.
pub struct DbAdapter {
    db: Db,
    tenant: String,
}

impl DbAdapter {
    pub fn new(db: Db, tenant: &str) -> Self {
        Self {
            db,
            tenant: tenant.to_owned(),
        }
    }
}

fn adapter_error(e: StoreError) -> casbin::Error {
    casbin::Error::AdapterError(AdapterError(Box::new(e)))
}

#[async_trait]
impl Adapter for DbAdapter {
    async fn load_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        let tenant = self.tenant.clone();
        let rows = self
            .db
            .run(move |c| policies::rules_of(c, &tenant))
            .await
            .map_err(adapter_error)?;
        for row in rows {
            let sec = row
                .ptype
                .chars()
                .next()
                .map(String::from)
                .unwrap_or_default();
            m.add_policy(&sec, &row.ptype, row.values());
        }
        Ok(())
    }

    async fn load_filtered_policy<'a>(
        &mut self,
        m: &mut dyn Model,
        _f: Filter<'a>,
    ) -> casbin::Result<()> {
        // This adapter is already filtered to one tenant.
        self.load_policy(m).await
    }

    async fn save_policy(&mut self, _m: &mut dyn Model) -> casbin::Result<()> {
        // Policies are written rule by rule through the service layer.
        Ok(())
    }

    async fn clear_policy(&mut self) -> casbin::Result<()> {
        Ok(())
    }

    /// The whole policy of this adapter is its tenant's, so Casbin must load
    /// it at start (a filtered adapter would be skipped).
    fn is_filtered(&self) -> bool {
        false
    }

    async fn add_policy(
        &mut self,
        _sec: &str,
        ptype: &str,
        rule: Vec<String>,
    ) -> casbin::Result<bool> {
        self.add_policies(_sec, ptype, vec![rule]).await
    }

    async fn add_policies(
        &mut self,
        _sec: &str,
        ptype: &str,
        rules: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        let tenant = self.tenant.clone();
        let ptype = ptype.to_owned();
        self.db
            .transaction(move |c| {
                for rule in &rules {
                    policies::insert_rule(c, &RuleRow::new(&tenant, &ptype, rule))?;
                }
                Ok(())
            })
            .await
            .map_err(adapter_error)?;
        Ok(true)
    }

    async fn remove_policy(
        &mut self,
        _sec: &str,
        ptype: &str,
        rule: Vec<String>,
    ) -> casbin::Result<bool> {
        self.remove_policies(_sec, ptype, vec![rule]).await
    }

    async fn remove_policies(
        &mut self,
        _sec: &str,
        ptype: &str,
        rules: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        let tenant = self.tenant.clone();
        let ptype = ptype.to_owned();
        let n = self
            .db
            .transaction(move |c| {
                let mut n = 0;
                for rule in &rules {
                    n += policies::delete_rules(c, &tenant, &ptype, rule)?;
                }
                Ok(n)
            })
            .await
            .map_err(adapter_error)?;
        Ok(n > 0)
    }

    async fn remove_filtered_policy(
        &mut self,
        _sec: &str,
        ptype: &str,
        field_index: usize,
        field_values: Vec<String>,
    ) -> casbin::Result<bool> {
        if field_index != 0 {
            return Ok(false);
        }
        self.remove_policies(_sec, ptype, vec![field_values]).await
    }
}
